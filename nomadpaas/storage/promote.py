"""Promote a built slug from its staging key to its content-addressed key, checking it.

The build task uploads its slug to `slugs/<app>/staging/<build id>.tar.gz` (its digest is
unknown until it is built) and records the slug's sha256 and MD5; the platform then moves
it to `slugs/<app>/<sha256>.tar.gz` server-side, refusing bytes that are not the ones the
task recorded (BuildFailed, exit 3), and deletes the staging copy: at once, or inside
`deferred_cleanup` on a thread joined when the block ends.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from nomadpaas.errors import BuildFailed, Conflict, NomadPaasError
from nomadpaas.storage import Storage, slug_key
from nomadpaas.storage.base import ObjectInfo
from nomadpaas.storage.keys import sha256_file

__all__ = ["deferred_cleanup", "promote"]

#: Seconds `deferred_cleanup` waits for a pending delete when its block ends (the thread
#: is not a daemon: even past this, the process does not exit before it is done).
CLEANUP_JOIN_S = 60.0

#: The pending cleanups of the innermost `deferred_cleanup` block (None outside one).
_deferred: ContextVar[list[threading.Thread] | None] = ContextVar(
    "nomadpaas_build_deferred", default=None
)


@contextlib.contextmanager
def deferred_cleanup() -> Iterator[None]:
    """Let `run_build` delete the staging slug on a thread, joined when the block ends.

    A succeeded build's last request (deleting `slugs/<app>/staging/<id>.tar.gz` once the
    slug is promoted) then overlaps what the caller does next: `push` writes the release
    inside the block. Outside a block, `run_build` deletes before it returns. A failed
    delete only leaves a stale staging object behind, so it is not an error.
    """
    pending: list[threading.Thread] = []
    token = _deferred.set(pending)
    try:
        yield
    finally:
        _deferred.reset(token)
        for thread in pending:
            thread.join(CLEANUP_JOIN_S)


def _delete_staging(storage: Storage, key: str) -> None:
    """Delete the staging slug now, or on a joined thread inside `deferred_cleanup`."""

    def delete() -> None:
        with contextlib.suppress(NomadPaasError):
            storage.delete(key)

    pending = _deferred.get()
    if pending is None:
        storage.delete(key)
        return
    thread = threading.Thread(target=delete, name="nomadpaas-staging-delete")
    thread.start()
    pending.append(thread)


def promote(
    storage: Storage,
    staging: str,
    app: str,
    sha256: str,
    md5: str = "",
    staged: ObjectInfo | None = None,
    *,
    look: bool = True,
) -> str:
    """Move the slug from its staging key to `slugs/<app>/<sha256>.tar.gz`, checking it.

    With the MD5 the build task recorded: the staging object's ETag (the MD5 of its
    bytes, for a single-part upload like the task's) must match before anything is
    written, so a corrupted or replaced slug never reaches the content-addressed key and
    a slug already there is never touched. Then one server-side copy, conditional on
    that ETag, whose result is checked again; copying over an existing slug with the
    same digest rewrites the same bytes, so the final key needs no look first. `staged`:
    the staging object's info, when the caller read it ahead. `look=False`: no look
    first, the copy's condition alone keeps other bytes out (one request less; S3 and the
    embedded server answer 412 to a mismatch). Without the MD5 (a record from an older
    build task), download and check the sha256.
    """
    final = slug_key(app, sha256)
    if md5:
        if look:
            info = staged if staged is not None else storage.head(staging)
            if info.etag != md5:
                raise _corrupted("MD5", info.etag, md5)
        try:
            copied = storage.copy(staging, final, if_match=md5)
        except Conflict:  # other bytes (replaced, maybe since the look): nothing written
            raise _corrupted("MD5", "(changed)", md5) from None
        if copied.etag != md5:  # a store that ignored the condition
            storage.delete(final)
            raise _corrupted("MD5", copied.etag, md5)
        _delete_staging(storage, staging)
        return final
    if storage.exists(final):
        _delete_staging(storage, staging)
        return final
    with tempfile.TemporaryDirectory(prefix="nomadpaas-slug-") as scratch:
        local = Path(scratch) / "slug.tar.gz"
        storage.get_file(staging, local)
        actual = sha256_file(local)
        if actual != sha256:
            raise _corrupted("sha256", actual, sha256)
        storage.put_file(final, local, content_type="application/gzip")
    _delete_staging(storage, staging)
    return final


def _corrupted(digest: str, actual: str, recorded: str) -> BuildFailed:
    return BuildFailed(
        f"The uploaded slug's {digest} is {actual[:12]}…, but the build recorded "
        f"{recorded[:12]}…: the slug was corrupted or replaced.",
        hint="Push again.",
    )
