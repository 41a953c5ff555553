"""The build task's first act: send the GETs its build will make, before importing the rest.

`python -m nomadpaas.slugbuilder task` spends ~10-15 ms importing the pipeline (json,
re, threading…) before it asks S3 for anything. The config vars, the source and
the build cache are plain GETs of presigned URLs from the dispatch meta, so those
requests go out first (`send_early_requests`, called before those imports); S3 answers
while this process imports, and HttpTransfer reads an answer when the build asks for
that very URL (`EarlyRequests.take`). No thread: an answer waits in its connection's
buffers until read.

Only the exact request the build makes is answered this way: the same URL and, for the
cache, the same ``If-None-Match`` (the node slot's tag, read here without touching the
slot; localcache.py). HttpTransfer uses an early answer only when it is a success, a 304
or a miss; anything else (another status, an error reading it) is dropped and the build
makes its request as it would have without this, with the same retries and errors.
Requests nobody took are closed with the transfer.
"""

from __future__ import annotations

import os

from nomadpaas.slugbuilder.http1 import send_request
from nomadpaas.slugbuilder.http_transfer import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, object_id
from nomadpaas.slugbuilder.payload import payload_path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    import _socket
    from collections.abc import Mapping

__all__ = ["EarlyRequests", "send_early_requests"]


class EarlyRequests:
    """GET requests already sent, by (URL, If-None-Match), until the build takes them."""

    def __init__(self) -> None:
        self._sent: dict[tuple[str, str | None], _socket.socket] = {}

    def send(self, url: str, if_none_match: str | None = None) -> bool:
        """Send a GET of `url` now; False when it could not be sent (nothing kept)."""
        headers = {"If-None-Match": if_none_match} if if_none_match else None
        try:
            sock = send_request(
                "GET", url, headers=headers,
                connect_timeout_s=CONNECT_TIMEOUT_S, read_timeout_s=READ_TIMEOUT_S,
            )  # fmt: skip
        except (OSError, ValueError):
            return False
        previous = self._sent.pop((url, if_none_match), None)
        if previous is not None:
            previous.close()
        self._sent[(url, if_none_match)] = sock
        return True

    def take(self, url: str, if_none_match: str | None) -> _socket.socket | None:
        """The connection of the early GET of exactly this request (the caller reads
        and closes it), or None: each is taken once."""
        return self._sent.pop((url, if_none_match or None), None)

    def pending(self) -> list[tuple[str, str | None]]:
        """The requests sent and not taken yet."""
        return list(self._sent)

    def close(self) -> None:
        """Close the connections nobody took."""
        while self._sent:
            _key, sock = self._sent.popitem()
            sock.close()


def send_early_requests(environ: Mapping[str, str]) -> EarlyRequests:
    """Send the config, source and cache GETs the dispatched build will make (see
    dispatched.py for the meta, task.py for the requests). Never raises: whatever could
    not be sent is simply made later by the build itself. No source GET when the source
    came as the dispatch payload (payload.py): the build does not fetch it then."""
    early = EarlyRequests()
    try:
        keys = ("config_url",) if payload_path(environ) else ("config_url", "source_url")
        for key in keys:
            url = _meta(environ, key)
            if url:
                early.send(url)
        cache_url = _meta(environ, "cache_url")
        if cache_url:
            early.send(cache_url, _slot_etag(environ, cache_url))
    except Exception:  # an optimisation must never fail the build
        pass
    return early


def _meta(environ: Mapping[str, str], key: str) -> str:
    """A dispatch meta value as dispatched.read_meta finds it ("" when unset)."""
    return environ.get(f"NOMAD_META_{key}") or environ.get(f"NOMAD_META_{key.upper()}") or ""


def _slot_etag(environ: Mapping[str, str], cache_url: str) -> str | None:
    """The ETag the build will send for its cache: its node slot's tag when the tag is
    of this cache object (what CacheSlot.take and buildcache.restore_slot do), else None."""
    root = environ.get("NOMADPAAS_BUILD_CACHE_DIR") or ""
    app, stack = _meta(environ, "app"), _meta(environ, "stack")
    if not root or "${" in root or not os.path.isabs(root):
        return None  # no node cache: LocalCache.from_env says the same
    if not all(name and "/" not in name and not name.startswith(".") for name in (app, stack)):
        return None  # not a plain name: the build gets no slot (and sends no ETag)
    slot = os.path.join(root, app, stack)
    try:
        with open(os.path.join(slot, "tag"), "rb") as f:
            raw = f.read()
    except OSError:
        return None
    if not os.path.isdir(os.path.join(slot, "tree")):
        return None
    import json  # after the source's request went out: json costs ~7 ms (re, enum)

    try:
        tag = json.loads(raw)
        obj, etag = str(tag["object"]), str(tag["etag"])
    except (ValueError, KeyError, TypeError):
        return None
    return etag if obj and etag and obj == object_id(cache_url) else None
