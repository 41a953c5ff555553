"""The `Storage` protocol: what the library needs from a blob store, whatever implements it.

`S3Storage` (s3.py) is the real one; `LocalStorage` (local.py) keeps objects in a
directory for unit tests. Both raise the typed errors of `nomadpaas.errors`:
NotFound for a missing object, StorageUnreachable when the store does not answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_PRESIGN_EXPIRY_S", "ObjectInfo", "ProgressCallback", "Storage"]

#: `on_progress(bytes_so_far, total_bytes)`; may be called from transfer worker threads.
ProgressCallback = Callable[[int, int], None]

#: Presigned URLs live one hour unless asked otherwise (a build fits comfortably).
DEFAULT_PRESIGN_EXPIRY_S = 3600


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object.

    Parameters:
        key: the object key.
        size: length in bytes.
        etag: the ETag without quotes (an MD5 only for single-part uploads).
        last_modified: when it was written, if the store says.
        content_type: set by `head`; None from listings.
        metadata: user metadata (the `x-amz-meta-*` values), set by `head`.
    """

    key: str
    size: int
    etag: str = ""
    last_modified: datetime | None = None
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Storage(Protocol):
    """A bucket of immutable-ish blobs addressed by keys from `nomadpaas.storage.keys`."""

    @property
    def bucket(self) -> str:
        """The bucket (or directory name) objects live in."""
        ...

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing; do nothing if it exists (idempotent)."""
        ...

    def exists(self, key: str) -> bool:
        """True when the object exists."""
        ...

    def head(self, key: str) -> ObjectInfo:
        """The object's size, ETag, content type and metadata; NotFound if absent."""
        ...

    def put_file(
        self,
        key: str,
        path: str | Path,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
        if_absent: bool = False,
    ) -> bool:
        """Upload a local file (multipart when large), reporting progress; True.

        With `if_absent`, an existing object is left alone and False returned, in one
        conditional request where the store allows (S3's `If-None-Match: *`).
        """
        ...

    def get_file(
        self, key: str, path: str | Path, *, on_progress: ProgressCallback | None = None
    ) -> None:
        """Download to `path` (written whole or not at all); NotFound if absent."""
        ...

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Store a small object from memory."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """A small object's bytes; NotFound if absent."""
        ...

    def copy(self, source: str, dest: str, *, if_match: str | None = None) -> ObjectInfo:
        """Copy `source` to `dest` inside the store (no bytes through this process);
        the new object's info, its ETag that of the copied bytes. NotFound if absent.

        With `if_match` (an ETag, no quotes) the copy happens only if `source` still has
        that ETag, else Conflict and `dest` untouched (S3's x-amz-copy-source-if-match;
        a store that ignores the header copies anyway, so callers check the result too).
        """
        ...

    def delete(self, key: str) -> None:
        """Delete the object; deleting a missing object is not an error (S3 semantics)."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with `prefix`; return how many."""
        ...

    def list_prefix(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with `prefix`, sorted by key."""
        ...

    def presign_get(self, key: str, expires_s: int = DEFAULT_PRESIGN_EXPIRY_S) -> str:
        """A URL anyone can GET the object from, without credentials, for `expires_s`."""
        ...

    def presign_put(
        self,
        key: str,
        expires_s: int = DEFAULT_PRESIGN_EXPIRY_S,
        *,
        content_type: str | None = None,
    ) -> str:
        """A URL anyone can PUT the object to; with `content_type`, the PUT must send it."""
        ...
