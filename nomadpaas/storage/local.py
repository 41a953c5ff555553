"""LocalStorage: the `Storage` protocol over a local directory (a fake for unit tests).

Objects live under `<root>/<bucket>/` as `<sha256(key)>.data` plus a `.json` record
holding the key, content type and metadata, so no key can name a path outside the
directory. Writes are atomic (temp file + rename). Presigned URLs are `file://` URLs,
usable only by code on the same machine; use S3Storage wherever a process fetches
over HTTP.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from nomadpaas.errors import Conflict, NotFound
from nomadpaas.storage.base import DEFAULT_PRESIGN_EXPIRY_S, ObjectInfo, ProgressCallback
from nomadpaas.storage.keys import validate_key

__all__ = ["LocalStorage"]

#: Copy size for put_file/get_file progress reports.
CHUNK_BYTES = 1024 * 1024


class LocalStorage:
    """Objects in a directory; same contract and errors as S3Storage."""

    def __init__(self, root: str | Path, bucket: str = "nomadpaas") -> None:
        self.root = Path(root)
        self._bucket = bucket
        self._dir = self.root / bucket

    @property
    def bucket(self) -> str:
        return self._bucket

    def ensure_bucket(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)

    def _paths(self, key: str) -> tuple[Path, Path]:
        stem = hashlib.sha256(validate_key(key).encode("utf-8")).hexdigest()
        return self._dir / f"{stem}.data", self._dir / f"{stem}.json"

    def _record(self, key: str) -> dict[str, object]:
        data, meta = self._paths(key)
        try:
            record: dict[str, object] = json.loads(meta.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFound(f"{self._bucket}/{key} does not exist in {self.root}.") from None
        if not data.exists():
            raise NotFound(f"{self._bucket}/{key} does not exist in {self.root}.")
        return record

    def exists(self, key: str) -> bool:
        data, meta = self._paths(key)
        return data.exists() and meta.exists()

    def head(self, key: str) -> ObjectInfo:
        record = self._record(key)
        data, _ = self._paths(key)
        stat = data.stat()
        metadata = record.get("metadata")
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            etag=str(record.get("etag", "")),
            last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
            content_type=str(record.get("content_type") or "binary/octet-stream"),
            metadata=dict(metadata) if isinstance(metadata, dict) else {},
        )

    def _write(
        self,
        key: str,
        src: Path | bytes,
        content_type: str | None,
        metadata: Mapping[str, str] | None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.ensure_bucket()
        data, meta = self._paths(key)
        md5 = hashlib.md5(usedforsecurity=False)
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(src, bytes):
                    out.write(src)
                    md5.update(src)
                else:
                    total, done = src.stat().st_size, 0
                    with open(src, "rb") as f:
                        while chunk := f.read(CHUNK_BYTES):
                            out.write(chunk)
                            md5.update(chunk)
                            done += len(chunk)
                            if on_progress:
                                on_progress(done, total)
                    if on_progress and total == 0:
                        on_progress(0, 0)
            os.replace(tmp, data)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        record = {
            "key": key,
            "etag": md5.hexdigest(),
            "content_type": content_type,
            "metadata": dict(metadata or {}),
        }
        meta.write_text(json.dumps(record), encoding="utf-8")

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
        if if_absent and self.exists(key):
            return False
        self._write(key, Path(path), content_type, metadata, on_progress)
        return True

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self._write(key, bytes(data), content_type, metadata)

    def get_file(
        self, key: str, path: str | Path, *, on_progress: ProgressCallback | None = None
    ) -> None:
        self._record(key)
        data, _ = self._paths(key)
        target = Path(path)
        total, done = data.stat().st_size, 0
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as out, open(data, "rb") as f:
                while chunk := f.read(CHUNK_BYTES):
                    out.write(chunk)
                    done += len(chunk)
                    if on_progress:
                        on_progress(done, total)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def get_bytes(self, key: str) -> bytes:
        self._record(key)
        return self._paths(key)[0].read_bytes()

    def copy(self, source: str, dest: str, *, if_match: str | None = None) -> ObjectInfo:
        record = self._record(source)
        if if_match is not None and str(record.get("etag", "")) != if_match:
            raise Conflict(
                f"{self._bucket}/{source} no longer has ETag {if_match}; not copied to {dest}."
            )
        metadata = record.get("metadata")
        content_type = record.get("content_type")
        self._write(
            dest,
            self._paths(source)[0],
            str(content_type) if content_type else None,
            dict(metadata) if isinstance(metadata, dict) else None,
        )
        return self.head(dest)

    def delete(self, key: str) -> None:
        for p in self._paths(key):
            p.unlink(missing_ok=True)

    def list_prefix(self, prefix: str) -> list[ObjectInfo]:
        if not self._dir.exists():
            return []
        out = []
        for meta in self._dir.glob("*.json"):
            key = str(json.loads(meta.read_text(encoding="utf-8"))["key"])
            if key.startswith(prefix) and self.exists(key):
                out.append(self.head(key))
        return sorted(out, key=lambda o: o.key)

    def delete_prefix(self, prefix: str) -> int:
        found = self.list_prefix(prefix)
        for obj in found:
            self.delete(obj.key)
        return len(found)

    def presign_get(self, key: str, expires_s: int = DEFAULT_PRESIGN_EXPIRY_S) -> str:
        return self._paths(key)[0].resolve().as_uri()

    def presign_put(
        self,
        key: str,
        expires_s: int = DEFAULT_PRESIGN_EXPIRY_S,
        *,
        content_type: str | None = None,
    ) -> str:
        return self._paths(key)[0].resolve().as_uri()

    def wipe(self) -> None:
        """Remove the bucket directory and everything in it (test helper)."""
        shutil.rmtree(self._dir, ignore_errors=True)
