"""The embedded S3 server's durable directory: buckets and objects as crash-safe files.

Layout under the data dir (`--data-dir`)::

    LOCK                                   flock'ed by the one server using the dir
    buckets/<bucket>.json                  {"Name", "Region", "AccountId", "CreationDate"}
    objects/<bucket>/<h>.json              sidecar: Key, Data, Size, ETag, LastModified,
                                           Metadata (incl. Content-Type), StorageClass, Tags
    objects/<bucket>/<h>.<gen>.data        the bytes; <h> = sha256(key), <gen> unique

An object no larger than the store's `inline_max_bytes` keeps its bytes in its sidecar
(`Inline`, base64; `Data` is "") and has no data file: one fsync'ed file instead of two
(the build records and sources a push writes are a few KiB).

Keys may hold `/`, `..` or any character, so files are named by the key's sha256 and the
key itself lives in the sidecar. Bucket directories are the url-quoted bucket name.

Crash safety: a new object's data goes to a fresh `<h>.<gen>.data` file and is fsync'ed;
then the sidecar naming it is written to a temporary file, fsync'ed and renamed over
`<h>.json` (the commit point), then the directory is fsync'ed. Only after that is the
previous generation's data file removed. A key with no record yet has no old sidecar to
keep whole, so its sidecar is created in place (O_EXCL) and fsync'ed instead: a crash
mid-write leaves torn JSON, which `load()` removes (the key was never acknowledged).
A crash at any point leaves either the old or the new object; unreferenced data files,
torn sidecars and temporaries are swept by `load()`. ("fsync'ed" means fdatasync for a
file, which makes its bytes and size durable, and fsync for a directory.)

Data files are immutable once committed (a generation is never rewritten, only
unlinked), so a server-side copy of stored bytes hard-links the source's data file under
the copy's own generation name (`put_object(share=...)`) instead of writing and
fsync'ing the bytes again; the bytes are compared through the new link first. The
inode lives as long as any name does: deleting or overwriting the source unlinks only
its name. The link's entry, like a data file's, is made durable by the commit's
directory fsync (same directory as the sidecar).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import io
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from nomadpaas.stack.durable import TMP_MARK as _TMP_MARK
from nomadpaas.stack.durable import create_json as _create_json
from nomadpaas.stack.durable import fsync_dir
from nomadpaas.stack.durable import remove_tree as _remove_tree
from nomadpaas.stack.durable import write_json_atomic as _write_json_atomic
from nomadpaas.stack.durable import write_synced as _write_data

__all__ = ["DataDirLocked", "ObjectStore", "StoredBucket", "StoredObject"]

log = logging.getLogger(__name__)

#: Sidecar format version; bump on incompatible change.
FORMAT_VERSION = 1


class DataDirLocked(RuntimeError):
    """Another server process holds the data directory."""


@dataclass(frozen=True)
class StoredBucket:
    """A bucket as recorded on disk."""

    name: str
    region: str
    account_id: str
    creation_date: str

    def to_json(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Region": self.region,
            "AccountId": self.account_id,
            "CreationDate": self.creation_date,
        }


@dataclass(frozen=True)
class StoredObject:
    """An object as recorded on disk; `data` is its data file's name ("" before writing
    or when `inline` holds the bytes)."""

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: str
    metadata: dict[str, str] = field(default_factory=dict)
    storage_class: str = "STANDARD"
    tags: dict[str, str] = field(default_factory=dict)
    data: str = ""
    inline: bytes | None = None

    def same_bytes(self, other: StoredObject) -> bool:
        """True when both describe the same upload (so the data file can be kept)."""
        return (self.etag, self.size, self.last_modified) == (
            other.etag,
            other.size,
            other.last_modified,
        )

    def same_record(self, other: StoredObject) -> bool:
        """True when nothing in the sidecar would change (ignoring the data file name)."""
        return replace(self, data="", inline=None) == replace(other, data="", inline=None)

    def to_json(self) -> dict[str, Any]:
        inline = {} if self.inline is None else {"Inline": base64.b64encode(self.inline).decode()}
        return inline | {
            "Version": FORMAT_VERSION,
            "Bucket": self.bucket,
            "Key": self.key,
            "Data": self.data,
            "Size": self.size,
            "ETag": self.etag,
            "LastModified": self.last_modified,
            "Metadata": self.metadata,
            "StorageClass": self.storage_class,
            "Tags": self.tags,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StoredObject:
        return cls(
            bucket=str(d["Bucket"]),
            key=str(d["Key"]),
            size=int(d["Size"]),
            etag=str(d["ETag"]),
            last_modified=str(d["LastModified"]),
            metadata={str(k): str(v) for k, v in dict(d.get("Metadata") or {}).items()},
            storage_class=str(d.get("StorageClass") or "STANDARD"),
            tags={str(k): str(v) for k, v in dict(d.get("Tags") or {}).items()},
            data=str(d["Data"]),
            inline=base64.b64decode(d["Inline"], validate=True) if "Inline" in d else None,
        )


def key_hash(key: str) -> str:
    """The file stem for `key`: its sha256, so any key maps to one safe name."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def bucket_dirname(bucket: str) -> str:
    """`bucket` url-quoted into a single path component."""
    name = quote(bucket, safe="-_")  # quote() keeps dots; buckets are >= 3 chars
    if name in ("", ".", ".."):
        raise ValueError(f"unusable bucket name {bucket!r}")
    return name


class ObjectStore:
    """The data directory: one writer process, crash-safe object and bucket files."""

    def __init__(self, root: Path, inline_max_bytes: int | None = None) -> None:
        self.root = root
        #: Objects up to this size keep their bytes in the sidecar (None: none does).
        self.inline_max_bytes = inline_max_bytes
        self._buckets = root / "buckets"
        self._objects = root / "objects"
        self._lock_fd: int | None = None

    # -- lifecycle --------------------------------------------------------------------

    def open(self) -> None:
        """Create the layout and take the directory lock; DataDirLocked if taken."""
        # No authentication in front of this data (see s3server): keep it owner-only.
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for d in (self._buckets, self._objects):
            d.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.root / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirLocked(f"{self.root} is in use by another S3 server") from None
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def load(self) -> tuple[list[StoredBucket], list[StoredObject]]:
        """Every recorded bucket and object; sweeps temporaries and orphaned data."""
        buckets: list[StoredBucket] = []
        for path in sorted(self._buckets.iterdir()):
            if _TMP_MARK in path.name:
                path.unlink(missing_ok=True)
                continue
            try:
                d = json.loads(path.read_text(encoding="utf-8"))
                buckets.append(
                    StoredBucket(
                        str(d["Name"]),
                        str(d["Region"]),
                        str(d["AccountId"]),
                        str(d.get("CreationDate", "")),
                    )
                )
            except (OSError, ValueError, KeyError) as exc:
                log.warning("skipping unreadable bucket record %s: %s", path, exc)
        known = {bucket_dirname(b.name) for b in buckets}
        objects: list[StoredObject] = []
        for bdir in sorted(self._objects.iterdir()):
            if bdir.name not in known:
                # A bucket deleted (it was empty) before its directory went away.
                _remove_tree(bdir)
                continue
            objects.extend(self._load_bucket_dir(bdir))
        return buckets, objects

    def _load_bucket_dir(self, bdir: Path) -> Iterator[StoredObject]:
        referenced: set[str] = set()
        entries = sorted(bdir.iterdir())
        for path in entries:
            if _TMP_MARK in path.name:
                path.unlink(missing_ok=True)
            elif path.suffix == ".json":
                try:
                    record = json.loads(path.read_text(encoding="utf-8"))
                except ValueError:  # torn: created in place, never committed
                    path.unlink(missing_ok=True)
                    continue
                except OSError as exc:
                    log.warning("skipping unreadable object record %s: %s", path, exc)
                    continue
                try:
                    obj = StoredObject.from_json(record)
                    if obj.inline is not None:
                        size = len(obj.inline)
                    else:
                        size = (bdir / obj.data).stat().st_size if obj.data else -1
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.warning("skipping unreadable object record %s: %s", path, exc)
                    continue
                if size != obj.size:
                    log.warning(
                        "skipping %s: data is %d bytes, record says %d", path, size, obj.size
                    )
                    continue
                if obj.data:
                    referenced.add(obj.data)
                yield obj
        for path in entries:
            if path.suffix == ".data" and path.name not in referenced:
                path.unlink(missing_ok=True)  # written, never committed

    # -- buckets ----------------------------------------------------------------------

    def put_bucket(self, bucket: StoredBucket) -> None:
        bdir = self._objects / bucket_dirname(bucket.name)
        if not bdir.exists():
            bdir.mkdir()
            fsync_dir(self._objects)
        _write_json_atomic(self._buckets / f"{bucket_dirname(bucket.name)}.json", bucket.to_json())

    def delete_bucket(self, name: str) -> None:
        record = self._buckets / f"{bucket_dirname(name)}.json"
        record.unlink(missing_ok=True)
        fsync_dir(self._buckets)  # commit point; leftovers are swept by load()
        _remove_tree(self._objects / bucket_dirname(name))

    # -- objects ----------------------------------------------------------------------

    def data_path(self, obj: StoredObject) -> Path:
        return self._objects / bucket_dirname(obj.bucket) / obj.data

    def open_data(self, obj: StoredObject) -> IO[bytes]:
        """The object's bytes, from its sidecar or its data file."""
        if obj.inline is not None:
            return io.BytesIO(obj.inline)
        return open(self.data_path(obj), "rb")

    def put_object(
        self,
        obj: StoredObject,
        write_data: Callable[[IO[bytes]], None] | None,
        previous: StoredObject | None,
        *,
        share: tuple[StoredObject, Callable[[IO[bytes]], bool]] | None = None,
        data_file: str | None = None,
    ) -> StoredObject:
        """Record `obj`; `write_data` writes its bytes (None: keep `previous`'s bytes).

        Bytes up to `inline_max_bytes` go into the sidecar itself, larger ones to a new
        data file fsync'ed before the sidecar naming it. `data_file`: one
        `write_data_file` already wrote (and synced) with these bytes, to commit as is;
        from here on it belongs to the store (if the commit fails, `load()` sweeps it).

        `share` = (a stored object, a check): when the check, reading that object's data
        file, says it holds `obj`'s bytes, the file is hard-linked under `obj`'s new data
        name instead of written again (a server-side copy). Data files are never changed
        once committed, so the link is as durable as the original; otherwise (no link
        possible, or other bytes) `write_data` writes them. Returns the record as
        committed (with its data file name).
        """
        bdir = self._objects / bucket_dirname(obj.bucket)
        stem = key_hash(obj.key)
        if write_data is None:
            if previous is None:
                raise ValueError("no data to keep for a new object")
            committed = replace(obj, data=previous.data, inline=previous.inline)
        elif self.inline_max_bytes is not None and obj.size <= self.inline_max_bytes:
            buf = io.BytesIO()
            write_data(buf)
            committed = replace(obj, data="", inline=buf.getvalue())
            if data_file is not None:
                self.discard_data_file(obj.bucket, data_file)
        elif data_file is not None:
            committed = replace(obj, data=data_file)
        else:
            committed = replace(obj, data=f"{stem}.{uuid.uuid4().hex}.data")
            path = bdir / committed.data
            if share is None or not self._link_data(share[0], path, share[1]):
                _write_data(path, write_data)
        # The commit point. Its directory fsync also makes the new data file's (or link's)
        # entry durable: both live in `bdir`, so a sidecar never outlives its data.
        sidecar = bdir / f"{stem}.json"
        if previous is None and _create_json(sidecar, committed.to_json()):
            fsync_dir(bdir)
        else:
            _write_json_atomic(sidecar, committed.to_json())
        if previous is not None and previous.data and previous.data != committed.data:
            (bdir / previous.data).unlink(missing_ok=True)
        return committed

    def write_data_file(self, bucket: str, key: str, data: bytes) -> str:
        """Write and sync a new data file of `key` holding `data`, not committed (no
        record names it yet); its name, for `put_object(data_file=)` or
        `discard_data_file`."""
        name = f"{key_hash(key)}.{uuid.uuid4().hex}.data"
        _write_data(self._objects / bucket_dirname(bucket) / name, lambda out: out.write(data))
        return name

    def discard_data_file(self, bucket: str, name: str) -> None:
        """Remove a data file `write_data_file` made that no record names."""
        (self._objects / bucket_dirname(bucket) / name).unlink(missing_ok=True)

    def _link_data(
        self, source: StoredObject, path: Path, same_bytes: Callable[[IO[bytes]], bool]
    ) -> bool:
        """Hard-link `source`'s data file at `path` if it holds the wanted bytes."""
        if not source.data:
            return False
        try:
            os.link(self.data_path(source), path)
        except OSError:  # gone (overwritten, deleted), or a file system without links
            return False
        try:
            # Checked through the new link: that inode cannot change or go away under us.
            with open(path, "rb") as f:
                if same_bytes(f):
                    return True
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        path.unlink(missing_ok=True)
        return False

    def delete_object(self, obj: StoredObject) -> None:
        bdir = self._objects / bucket_dirname(obj.bucket)
        (bdir / f"{key_hash(obj.key)}.json").unlink(missing_ok=True)
        fsync_dir(bdir)  # commit point
        if obj.data:
            (bdir / obj.data).unlink(missing_ok=True)
