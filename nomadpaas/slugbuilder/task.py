"""The build task around `build_slug`: fetch source and cache, build, store slug and cache.

This is the seam for the build job: every remote object is a URL handed in by the
dispatcher (presigned S3 URLs in the real job; ``file://`` URLs in tests), moved by a
`Transfer`. Nothing here knows S3, credentials or Nomad.

    source_url ─fetch─▶ source.tar.gz ─┐   (or source_file: the dispatch payload, checked)
    cache_url  ─fetch─▶ cache.tar.gz ──┼▶ build_slug ▶ slug.tar.gz ─store─▶ slug_url
                                       │              slug.json   ─store─▶ metadata_url
                                       └─ CACHE_DIR ─pack─▶ cache.tar.gz ─store─▶ cache_put_url

A missing or unreadable cache is a cache miss, never a failure; the cache is saved only
after a successful build (Heroku's rule), so a broken build cannot poison the next one.
How the cache is restored, compared and saved (the node-local tier, the cache left
untouched that is not uploaded again): buildcache.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from nomadpaas.errors import BuildFailed
from nomadpaas.frozen import Frozen, init_fields
from nomadpaas.slugbuilder.buildcache import fingerprint as _fingerprint
from nomadpaas.slugbuilder.buildcache import record_if_untouched as _record_if_untouched
from nomadpaas.slugbuilder.buildcache import restore_cache as _restore_cache
from nomadpaas.slugbuilder.buildcache import restore_slot as _restore_slot
from nomadpaas.slugbuilder.buildcache import same_object as _same_object
from nomadpaas.slugbuilder.buildcache import save_cache as _save_cache
from nomadpaas.slugbuilder.buildcache import tree_bytes as _tree_bytes
from nomadpaas.slugbuilder.compile import (
    DEFAULT_STACK,
    BuildRequest,
    SlugMetadata,
    build_slug,
    default_buildpacks_dir,
)
from nomadpaas.slugbuilder.http_transfer import Fetched, object_id
from nomadpaas.slugbuilder.localcache import CacheSlot, LocalCache, Tag
from nomadpaas.slugbuilder.timings import Timings

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    from typing import Any, Protocol
else:  # `typing` is not imported at run time; the Protocol only types callers
    Protocol = object

__all__ = ["BuildTask", "Fetched", "FileTransfer", "Transfer", "run_build_task"]

Log = Callable[[str], None]

#: Printed when only the slug's upload and the build record are left.
UPLOADING_LINE = "-----> Uploading the slug"
#: How long a build waits for its app's node cache slot while another build holds it
#: (usually the previous push's task, still saving the cache after its result) before it
#: builds from the S3 copy of the cache instead.
SLOT_WAIT_S = 20.0


class Transfer(Protocol):
    """Moves whole objects between URLs and local files."""

    def fetch(self, url: str, dest: str) -> bool:
        """Download `url` to `dest`; False when the object does not exist."""
        ...

    def fetch_tagged(self, url: str, dest: str, if_none_match: str | None = None) -> Fetched:
        """Download `url` to `dest` unless its ETag is `if_none_match`; say which."""
        ...

    def store(self, path: str, url: str) -> str | None:
        """Upload the file at `path` to `url` (replacing it); the new ETag when known."""
        ...


class FileTransfer:
    """A Transfer for ``file://`` URLs (tests, and a shared filesystem).

    An object's ETag is its file's inode, size and mtime: `store` replaces the file, so
    every store makes a new one.
    """

    def fetch(self, url: str, dest: str | os.PathLike[str]) -> bool:
        return self.fetch_tagged(url, dest).status == "fetched"

    def fetch_tagged(
        self, url: str, dest: str | os.PathLike[str], if_none_match: str | None = None
    ) -> Fetched:
        source = _file_path(url)
        if not os.path.isfile(source):
            return Fetched("missing")
        etag = _file_etag(source)
        if if_none_match is not None and if_none_match == etag:
            return Fetched("not-modified", etag)
        import shutil  # file:// URLs are for tests, not the job

        shutil.copyfile(source, dest)
        return Fetched("fetched", etag)

    def store(self, path: str | os.PathLike[str], url: str) -> str | None:
        target = _file_path(url)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        partial = target + ".partial"
        import shutil

        shutil.copyfile(path, partial)
        os.replace(partial, target)  # readers never see a half-written object
        return _file_etag(target)


def _file_etag(path: str) -> str:
    st = os.stat(path)
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def _file_path(url: str) -> str:
    from urllib.parse import unquote, urlsplit  # file:// URLs are for tests, not the job

    parsed = urlsplit(url)
    if parsed.scheme != "file":
        raise ValueError(f"FileTransfer only handles file:// URLs, got {url!r}")
    return unquote(parsed.path)


class BuildTask(Frozen):
    """What the dispatcher gives one build (the build job's meta, resolved to URLs)."""

    __match_args__ = (
        "source_url", "slug_url", "metadata_url", "cache_url", "cache_put_url", "config",
        "stack", "commit", "build_id", "source_file", "source_sha256",
    )  # fmt: skip
    __slots__ = __match_args__
    source_url: str
    slug_url: str
    metadata_url: str | None
    cache_url: str | None  # where to read the previous cache (may not exist)
    cache_put_url: str | None  # where to save the new cache; None = do not save
    config: Mapping[str, str]
    stack: str
    commit: str | None
    build_id: str | None
    #: The source as a local file (the dispatch payload), built from instead of fetching
    #: `source_url` once its sha256 is `source_sha256`.
    source_file: str | None
    source_sha256: str | None

    def __init__(
        self,
        source_url: str,
        slug_url: str,
        metadata_url: str | None = None,
        cache_url: str | None = None,
        cache_put_url: str | None = None,
        config: Mapping[str, str] | None = None,
        stack: str = DEFAULT_STACK,
        commit: str | None = None,
        build_id: str | None = None,
        source_file: str | None = None,
        source_sha256: str | None = None,
    ) -> None:
        init_fields(
            self, source_url=source_url, slug_url=slug_url, metadata_url=metadata_url,
            cache_url=cache_url, cache_put_url=cache_put_url,
            config={} if config is None else config, stack=stack, commit=commit,
            build_id=build_id, source_file=source_file, source_sha256=source_sha256,
        )  # fmt: skip


def run_build_task(
    task: BuildTask,
    transfer: Transfer,
    work_dir: str | os.PathLike[str],
    log: Log | None = None,
    buildpacks_dir: str | os.PathLike[str] | None = None,
    timings: Timings | None = None,
    *,
    local: LocalCache | None = None,
    app: str | None = None,
    on_slug_stored: Callable[[SlugMetadata], None] | None = None,
) -> SlugMetadata:
    """Fetch, build, store; return the slug's metadata or raise BuildFailed.

    `timings` receives the seconds of each phase (fetch_source, fetch_cache,
    restore_cache, the build's own phases, upload_slug, pack_cache, upload_cache,
    spare_cache).
    `local` (with the `app` name): the node's cache slots; the build uses this app's
    slot when it is free, else the S3 path in `work_dir` (see localcache.py).
    `on_slug_stored` is called once the slug is uploaded, before the cache is saved: the
    build has succeeded then (the dispatched task writes its record there).
    """
    emit: Log = log or (lambda _line: None)
    timer = timings or Timings()
    work_dir = os.fspath(work_dir)
    os.makedirs(work_dir, exist_ok=True)
    source = os.path.join(work_dir, "source.tar.gz")
    with timer.phase("fetch_source"):
        if task.source_file is not None:
            source = _checked_payload(task.source_file, task.source_sha256)
        elif not transfer.fetch(task.source_url, source):
            raise BuildFailed("The source archive to build does not exist (was the upload lost?)")
    slot = None
    if local is not None and app and task.cache_url:
        slot = local.acquire(app, task.stack, wait_s=SLOT_WAIT_S)
    try:
        return _build(
            task, transfer, work_dir, source, emit, timer, buildpacks_dir, slot, on_slug_stored
        )
    finally:
        if slot is not None and local is not None:
            slot.release()
            local.prune()


def _checked_payload(path: str, sha256: str | None) -> str:
    """`path` (the dispatch payload) once its sha256 is the one the platform sent."""
    if not sha256:
        raise BuildFailed(
            "The source came as the dispatch payload without its sha256 (the dispatch meta "
            "source_sha256): it cannot be checked, so it is not built",
            hint="Dispatch nomadpaas-build through `nomadpaas push`.",
        )
    with open(path, "rb") as f:
        digest = _sha256_hex(f.read())
    if digest != sha256.lower():
        raise BuildFailed(
            f"The dispatch payload's sha256 ({digest}) is not the source's ({sha256}, the "
            "dispatch meta source_sha256): the source changed on its way; it is not built",
            hint="Push again.",
        )
    return path


def _sha256_hex(data: bytes) -> str:
    """sha256 of `data`, without hashlib while it can: hashlib starts OpenSSL (~3.5 ms),
    which this build needs only later, if at all (packing)."""
    try:  # the stdlib's own implementation (Python 3.11; renamed _sha2 in 3.12)
        module: Any = __import__("_sha256")
    except ImportError:
        module = __import__("hashlib")
    return str(module.sha256(data).hexdigest())


def _build(
    task: BuildTask,
    transfer: Transfer,
    work_dir: str,
    source: str,
    emit: Log,
    timer: Timings,
    buildpacks_dir: str | os.PathLike[str] | None,
    slot: CacheSlot | None,
    on_slug_stored: Callable[[SlugMetadata], None] | None,
) -> SlugMetadata:
    if slot is None:
        cache_dir = os.path.join(work_dir, "cache")
        tag = _restore_cache(task, transfer, work_dir, cache_dir, emit, timer)
    else:
        cache_dir = slot.tree
        tag = _restore_slot(task, transfer, work_dir, slot, emit, timer)
    # The restored cache as the buildpacks find it, taken while the first detect runs
    # (`build_slug(meanwhile=)`: always before any compile, which alone may change it).
    taken: list[frozenset[tuple[str, int, int, int, str]]] = []

    def fingerprint_before() -> None:
        if tag is not None:
            taken.append(_fingerprint(cache_dir))

    request = BuildRequest(
        source=source,
        work_dir=os.path.join(work_dir, "build"),
        cache_dir=cache_dir,
        output_dir=os.path.join(work_dir, "out"),
        config=task.config,
        buildpacks_dir=buildpacks_dir or default_buildpacks_dir(),
        stack=task.stack,
        commit=task.commit,
        build_id=task.build_id,
    )
    try:
        result = build_slug(request, log=emit, timings=timer, meanwhile=fingerprint_before)
    except BaseException:
        # Heroku's rule: a failed build leaves the cache as it was. S3 is not written; the
        # slot keeps its tag only when the tree is untouched, else the next build ignores it.
        # Its spare may be half used: never trusted again. (No fingerprint taken: the build
        # failed before any compile, so the tree is as restored.)
        if slot is not None:
            slot.drop_spare()
            if tag is not None and tag.etag:
                restored = taken[0] if taken else _fingerprint(cache_dir)
                _record_if_untouched(slot, tag, cache_dir, restored)
        raise
    before = taken[0] if taken else None
    emit(UPLOADING_LINE)
    with timer.phase("upload_slug"):
        transfer.store(result.slug_path, task.slug_url)
    # The build's result is known now: whoever waits for it need not wait for the cache,
    # which only the next build reads (and which is best effort anyway).
    if on_slug_stored is not None:
        on_slug_stored(result.metadata)
    if slot is not None:
        slot.drop_spare()  # what this build's buildpacks left of it
    saved: Tag | None = None  # the S3 object the cache tree now equals, when known
    if task.cache_put_url:
        after = _fingerprint(cache_dir)
        if (
            before is not None
            and tag is not None
            and after == before
            and _same_object(task.cache_url, task.cache_put_url)
        ):
            emit("       Build cache unchanged since it was restored: not saved again")
            saved = tag._replace(bytes=_tree_bytes(after))
        else:
            etag = _save_cache(task.cache_put_url, transfer, work_dir, cache_dir, emit, timer)
            if etag:
                saved = Tag(object_id(task.cache_put_url), etag, _tree_bytes(after))
    if slot is not None and saved is not None and saved.etag:
        slot.record(saved)
        with timer.phase("spare_cache"):
            slot.make_spare()  # for the next build: never while the tree is untagged
    if task.metadata_url:
        transfer.store(result.metadata_path, task.metadata_url)
    return result.metadata
