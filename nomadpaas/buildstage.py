"""Staging a build's inputs in S3: the source upload and the task's presigned URLs.

The source goes to `sources/<app>/<sha256>.tar.gz` unless it is there already (a small
one in one conditional PUT, a large one looked for first, then sent with progress
events); the build task gets presigned URLs only, never credentials. `Events` serialises
the build's `on_event` callbacks (upload progress arrives on boto3's worker threads).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nomadpaas.errors import NotFound
from nomadpaas.models import BuildEvent
from nomadpaas.storage import Storage

__all__ = [
    "CONDITIONAL_PUT_MAX_BYTES",
    "PRESIGN_EXPIRY_S",
    "PROGRESS_STEP_BYTES",
    "EventCallback",
    "Events",
    "presigned_urls",
    "size_text",
    "upload",
    "upload_source",
]

EventCallback = Callable[[BuildEvent], None]

#: Presigned URLs outlive the longest build the job allows (20 min) plus queueing.
PRESIGN_EXPIRY_S = 2 * 3600
#: Upload progress events: at most one per this many bytes (plus the last).
PROGRESS_STEP_BYTES = 1024 * 1024
#: Sources up to this size go up in one conditional PUT, without a look first: sending
#: them costs about what asking whether they exist does.
CONDITIONAL_PUT_MAX_BYTES = 1024 * 1024


@dataclass
class Events:
    """Serialises callbacks (S3 progress arrives on boto3's worker threads)."""

    callback: EventCallback | None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, kind: str, message: str = "", **data: Any) -> None:
        if self.callback is not None:
            with self._lock:
                self.callback(BuildEvent(kind, message, data))


def upload_source(storage: Storage, key: str, path: Path, size: int, events: Events) -> None:
    """Upload the source unless it is there (`upload`); say which."""
    if not upload(storage, key, path, size, events):
        events("source-exists", "Source unchanged since an earlier push; not uploaded")


def presigned_urls(
    storage: Storage, src: str, staging: str, record: str, cache: str, config: str | None
) -> dict[str, str]:
    """The dispatch meta's URLs: what the build task may read and write, nothing else."""
    urls = {
        "source_url": storage.presign_get(src, PRESIGN_EXPIRY_S),
        "slug_url": storage.presign_put(staging, PRESIGN_EXPIRY_S),
        "metadata_url": storage.presign_put(record, PRESIGN_EXPIRY_S),
        "cache_url": storage.presign_get(cache, PRESIGN_EXPIRY_S),
        "cache_put_url": storage.presign_put(cache, PRESIGN_EXPIRY_S),
    }
    if config is not None:
        urls["config_url"] = storage.presign_get(config, PRESIGN_EXPIRY_S)
    return urls


def size_text(n: int) -> str:
    return f"{n / 1024**2:.1f} MB" if n >= 1024**2 else f"{n / 1024:.1f} KB"


def upload(storage: Storage, key: str, path: Path, size: int, events: Events) -> bool:
    """Upload the source unless `key` exists; False when it did (no byte sent).

    A small source goes up in one conditional PUT (`if_absent`) that also answers whether
    it existed, its events sent once it is stored; a large one is looked for first, then
    uploaded with live progress. A missing bucket (a first push) is created on the way.
    """
    reported = [-PROGRESS_STEP_BYTES]
    pending: list[tuple[int, int]] = []
    small = size <= CONDITIONAL_PUT_MAX_BYTES

    def progress(sent: int, total: int) -> None:
        if sent - reported[0] >= PROGRESS_STEP_BYTES or sent >= total:
            reported[0] = sent
            if small:
                pending.append((sent, total))
            else:
                events("upload", "", sent=sent, total=total)

    def put() -> bool:
        return storage.put_file(
            key, path, content_type="application/gzip", on_progress=progress, if_absent=True
        )

    start = ("upload", f"Uploading source ({size_text(size)})")
    if not small:
        if _present(storage, key):
            return False
        events(*start, sent=0, total=size)
    try:
        written = put()
    except NotFound:  # the bucket itself is missing (a first push): create it, then retry
        storage.ensure_bucket()
        written = put()
    if not written:
        return False
    if small:
        events(*start, sent=0, total=size)
        for sent, total in pending:
            events("upload", "", sent=sent, total=total)
    events("uploaded", "Source uploaded", key=key, bytes=size)
    return True


def _present(storage: Storage, key: str) -> bool:
    """Whether `key` exists, in one request: a missing bucket reads as a missing object
    (HEAD cannot tell them apart) and is created when the upload finds it missing."""
    try:
        storage.head(key)
    except NotFound:
        return False
    return True
