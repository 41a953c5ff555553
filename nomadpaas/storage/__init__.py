"""Blob storage: content-addressed keys over S3 (the only boto3 user is s3.py).

`Storage` is the protocol the library codes against; `S3Storage` (imported lazily, so
`import nomadpaas.storage` never loads boto3) talks to any S3, `LocalStorage` keeps
objects in a directory for unit tests. `keys` lays out where each kind of object lives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nomadpaas.storage.base import DEFAULT_PRESIGN_EXPIRY_S, ObjectInfo, ProgressCallback, Storage
from nomadpaas.storage.keys import (
    app_prefixes,
    build_record_key,
    cache_key,
    sha256_file,
    slug_key,
    source_key,
    validate_key,
)
from nomadpaas.storage.local import LocalStorage

if TYPE_CHECKING:
    from nomadpaas.storage.s3 import S3Storage

__all__ = [
    "DEFAULT_PRESIGN_EXPIRY_S",
    "LocalStorage",
    "ObjectInfo",
    "ProgressCallback",
    "S3Storage",
    "Storage",
    "app_prefixes",
    "build_record_key",
    "cache_key",
    "sha256_file",
    "slug_key",
    "source_key",
    "validate_key",
]


def __getattr__(name: str) -> Any:
    # S3Storage on first use only: boto3 costs ~0.3 s to import.
    if name == "S3Storage":
        from nomadpaas.storage.s3 import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
