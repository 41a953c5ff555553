"""Keeps moto's in-memory S3 backend and the durable directory (s3persist) in step.

`restore()` loads the directory into moto before the server serves. `sync_key`,
`sync_bucket` and `sync_all` make the directory match moto's current state for one
object, one bucket or everything; the server calls them after each successful mutating
request, before the client sees the answer. Syncing state rather than replaying requests
means no S3 operation needs its own code: PUT, CompleteMultipartUpload, CopyObject,
DeleteObject(s), PutObjectTagging all end as "this key now holds that object (or none)".

What is kept: buckets (name, region), each key's latest version with its bytes, ETag,
Last-Modified, metadata and content headers, storage class and tags. Not kept: bucket
configuration (versioning, policies, CORS, lifecycle), ACLs, older versions, and
multipart uploads still in progress (their parts live in memory only).

A large new object's data file is written and synced ahead of the sync (`prewrite`, on a
worker thread, started as soon as moto holds the bytes and while it still hashes them);
the sync then commits that file instead of writing one, and a request whose prewrite
went unused (the key was overwritten meanwhile, or the request failed) discards it.

A CopyObject's target is synced with a hint naming its source (`sync_key(copied_from=)`):
when the directory holds the source with the same ETag and size, and the bytes compare
equal, the copy shares the source's data file (a hard link) instead of a second write.

moto keeps an object's bytes in `FakeKey._value_buffer` (a spooled temp file guarded by
`FakeKey.lock`); streaming through it avoids holding a second copy of a large object.
"""

from __future__ import annotations

import datetime
import io
import logging
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

from nomadpaas.stack.s3persist import ObjectStore, StoredBucket, StoredObject

__all__ = ["Mirror"]

log = logging.getLogger(__name__)

#: Copy buffer between moto's spooled file and ours.
COPY_CHUNK_BYTES = 1024 * 1024
#: Independent locks for keys: enough to keep unrelated writes apart.
LOCK_STRIPES = 64
#: A key rewritten while we copy it is re-read this many times before giving up.
SYNC_ATTEMPTS = 5
#: Threads writing data files ahead of their sync (`Mirror.prewrite`).
PREWRITE_THREADS = 2


class Mirror:
    """moto's S3 state ↔ an ObjectStore, one writer per key at a time."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._objects: dict[tuple[str, str], StoredObject] = {}
        self._buckets: dict[str, StoredBucket] = {}
        self._index_lock = threading.Lock()  # guards the two dicts above
        self._bucket_lock = threading.RLock()  # serializes bucket create/delete syncs
        self._stripes = [threading.Lock() for _ in range(LOCK_STRIPES)]
        #: id(FakeKey) → (that FakeKey, its size, its data file being written); the entry
        #: keeps the FakeKey alive, so its id cannot be reused while listed. _index_lock.
        self._prewrites: dict[int, tuple[Any, int, Future[str]]] = {}
        self._prewriter = ThreadPoolExecutor(PREWRITE_THREADS, "s3-prewrite")

    # -- start-up ---------------------------------------------------------------------

    def restore(self) -> tuple[int, int]:
        """Load the directory into moto; return (buckets, objects) restored."""
        from moto.s3.models import s3_backends
        from moto.utilities.utils import get_partition

        buckets, objects = self._store.load()
        for b in buckets:
            backend = s3_backends[b.account_id][get_partition(b.region)]
            fake = backend.create_bucket(b.name, b.region)
            if b.creation_date:
                fake.creation_date = datetime.datetime.fromisoformat(b.creation_date)
            self._buckets[b.name] = b
        for obj in objects:
            bucket = self._buckets.get(obj.bucket)
            if bucket is None:
                continue
            backend = s3_backends[bucket.account_id][get_partition(bucket.region)]
            self._load_object(backend, obj)
            self._objects[(obj.bucket, obj.key)] = obj
        return len(buckets), len(self._objects)

    def _load_object(self, backend: Any, obj: StoredObject) -> None:
        fake = backend.put_object(
            obj.bucket,
            obj.key,
            b"",
            storage=obj.storage_class,
            etag=obj.etag.strip('"'),  # FakeKey quotes it itself
            disable_notification=True,
        )
        with fake.lock, self._store.open_data(obj) as f:
            buf = fake._value_buffer
            buf.seek(0)
            buf.truncate()
            shutil.copyfileobj(f, buf, COPY_CHUNK_BYTES)
            fake.contentsize = obj.size
        fake.set_metadata(dict(obj.metadata))
        fake.last_modified = datetime.datetime.fromisoformat(obj.last_modified)
        if obj.tags:
            backend.put_object_tagging(fake, dict(obj.tags))

    # -- data written ahead -----------------------------------------------------------

    def prewrite(self, fake: Any) -> bool:
        """Start writing moto's new FakeKey's bytes to a data file; False if not done.

        Not for objects small enough to live inline in their sidecar, nor for those moto
        rolled over into a temporary file: it reads that file for the ETag without its
        lock, so a second reader moving the file position now would corrupt the hash.
        Bytes in memory are shared, never read through a position. The caller must
        `release([fake])` once its request is over, used or not.
        """
        limit = self._store.inline_max_bytes
        try:
            value = _value_in_memory(fake)
        except ValueError:  # already closed: overwritten
            return False
        if value is None or (limit is not None and len(value) <= limit):
            return False
        future = self._prewriter.submit(
            self._store.write_data_file, fake.bucket_name, fake.name, value
        )
        with self._index_lock:
            self._prewrites[id(fake)] = (fake, len(value), future)
        return True

    def release(self, fakes: list[Any]) -> None:
        """Discard the data files prewritten for `fakes` that no sync committed."""
        for fake in fakes:
            name = self._take_prewrite(fake)
            if name is not None:
                self._store.discard_data_file(fake.bucket_name, name)

    def _take_prewrite(self, fake: Any, size: int | None = None) -> str | None:
        """The synced data file prewritten for `fake` (now the caller's), or None; with
        `size`, only if it holds that many bytes (moto never changes a FakeKey's bytes,
        but a file of the wrong size must never be committed)."""
        with self._index_lock:
            entry = self._prewrites.pop(id(fake), None)
        if entry is None:
            return None
        try:
            name = entry[2].result()
        except Exception as exc:  # not written (disk full, bucket gone): write it later
            log.debug("prewrite of s3://%s/%s failed: %s", fake.bucket_name, fake.name, exc)
            return None
        if size is not None and size != entry[1]:
            self._store.discard_data_file(fake.bucket_name, name)
            return None
        return name

    # -- sync -------------------------------------------------------------------------

    def sync_all(self) -> None:
        """Make the directory match every bucket moto or the directory knows."""
        from moto.s3.models import s3_backends

        with self._index_lock:
            names = set(self._buckets) | {b for b, _ in self._objects}
        names |= set(s3_backends.bucket_accounts)
        for name in sorted(names):
            self.sync_bucket(name)

    def sync_bucket(self, name: str) -> None:
        """Make the directory match moto for bucket `name` and all its keys."""
        with self._bucket_lock:
            fake = _find_bucket(name)
            if fake is not None:
                self._ensure_bucket_record(fake)
        keys = _snapshot_keys(fake) if fake is not None else []
        with self._index_lock:
            keys_known = [k for b, k in self._objects if b == name]
        for key in sorted(set(keys) | set(keys_known)):
            self.sync_key(name, key)
        if fake is None:
            with self._bucket_lock:
                if _find_bucket(name) is None and name in self._buckets:
                    self._store.delete_bucket(name)
                    with self._index_lock:
                        del self._buckets[name]

    def sync_key(self, bucket: str, key: str, copied_from: tuple[str, str] | None = None) -> None:
        """Make the directory hold exactly what moto holds for `bucket`/`key`.

        `copied_from`: the (bucket, key) a CopyObject just copied into it. When the
        directory holds that object with the same bytes, its data file is shared (a hard
        link) instead of written and fsync'ed again.
        """
        with self._stripes[hash((bucket, key)) % LOCK_STRIPES]:
            for _ in range(SYNC_ATTEMPTS):
                try:
                    self._sync_key_once(bucket, key, copied_from)
                    return
                except ValueError:
                    # moto disposed (closed) the key's buffer under us: it was just
                    # overwritten or deleted. Look again at the current state.
                    continue
            raise RuntimeError(f"s3://{bucket}/{key} kept changing while being persisted")

    def _sync_key_once(self, bucket: str, key: str, copied_from: tuple[str, str] | None) -> None:
        with self._index_lock:
            previous = self._objects.get((bucket, key))
            source = self._objects.get(copied_from) if copied_from is not None else None
        fake_bucket = _find_bucket(bucket)
        fake = _current_key(fake_bucket, key) if fake_bucket is not None else None
        if fake is None:
            if previous is not None:
                self._store.delete_object(previous)
                with self._index_lock:
                    self._objects.pop((bucket, key), None)
            return
        assert fake_bucket is not None
        with self._bucket_lock:
            self._ensure_bucket_record(fake_bucket)
        current = _describe(fake_bucket, fake)
        if previous is not None and previous.same_bytes(current):
            if previous.same_record(current):
                return
            committed = self._store.put_object(current, None, previous)
        else:
            share = None
            if source is not None and (source.etag, source.size) == (current.etag, current.size):
                # Same ETag and size: very likely the same bytes; the store compares them.
                share = (source, lambda data: _same_value(fake, data))
            committed = self._store.put_object(
                current,
                lambda out: _copy_value(fake, out),
                previous,
                share=share,
                data_file=self._take_prewrite(fake, current.size),
            )
        with self._index_lock:
            self._objects[(bucket, key)] = committed

    def _ensure_bucket_record(self, fake_bucket: Any) -> None:
        if fake_bucket.name in self._buckets:
            return
        record = StoredBucket(
            name=fake_bucket.name,
            region=fake_bucket.region_name,
            account_id=fake_bucket.account_id,
            creation_date=fake_bucket.creation_date.isoformat(),
        )
        self._store.put_bucket(record)
        with self._index_lock:
            self._buckets[record.name] = record


def _find_bucket(name: str) -> Any:
    """moto's FakeBucket called `name`, in whichever account holds it, or None."""
    from moto.s3.models import s3_backends

    where = s3_backends.bucket_accounts.get(name)
    if where is None:
        return None
    partition, account_id = where
    return s3_backends[account_id][partition].buckets.get(name)


def _current_key(fake_bucket: Any, key: str) -> Any:
    """The key's latest FakeKey, or None (absent, or a delete marker on top)."""
    from moto.s3.models import FakeKey

    found = fake_bucket.keys.get(key)
    return found if isinstance(found, FakeKey) else None


def _snapshot_keys(fake_bucket: Any) -> list[str]:
    """The bucket's key names; retried when a concurrent write resizes the dict."""
    for _ in range(SYNC_ATTEMPTS):
        try:
            return list(fake_bucket.keys.keys())
        except RuntimeError:  # "dictionary changed size during iteration"
            continue
    return list(fake_bucket.keys.keys())


def _describe(fake_bucket: Any, fake: Any) -> StoredObject:
    """What the directory should record for moto's FakeKey `fake`."""
    from moto.s3.models import s3_backends

    with fake.lock:  # the ETag may be computed from the buffer right now
        etag = str(fake.etag)
        size = int(fake.size)
    backend = s3_backends[fake_bucket.account_id][fake_bucket.partition]
    tags = backend.tagger.get_tag_dict_for_resource(fake.arn)
    return StoredObject(
        bucket=fake_bucket.name,
        key=fake.name,
        size=size,
        etag=etag,
        last_modified=fake.last_modified.isoformat(),
        metadata={str(k): str(v) for k, v in dict(fake.metadata).items()},
        storage_class=str(fake.storage_class or "STANDARD"),
        tags={str(k): str(v) for k, v in dict(tags or {}).items()},
    )


def _value_in_memory(fake: Any) -> bytes | None:
    """The FakeKey's bytes without copying them, while its spooled file is in memory.

    Below moto's roll-over size `_value_buffer` (a SpooledTemporaryFile) keeps them in a
    BytesIO, whose getvalue() shares its buffer instead of copying it (moto's next write
    to it copies first). None once the bytes live in a real temporary file; ValueError,
    as when reading, if moto closed the buffer.
    """
    with fake.lock:
        inner = getattr(fake._value_buffer, "_file", None)
        return inner.getvalue() if isinstance(inner, io.BytesIO) else None


def _copy_value(fake: Any, out: IO[bytes]) -> None:
    """Stream the FakeKey's bytes into `out`; ValueError if moto closed the buffer."""
    value = _value_in_memory(fake)
    if value is not None:
        out.write(value)  # one write, straight from moto's memory
        return
    with fake.lock:
        buf = fake._value_buffer
        buf.seek(0)
        shutil.copyfileobj(buf, out, COPY_CHUNK_BYTES)


def _same_value(fake: Any, data: IO[bytes]) -> bool:
    """True when `data` (read to its end) holds exactly the FakeKey's bytes."""
    value = _value_in_memory(fake)
    if value is not None:
        pos = 0
        while chunk := data.read(COPY_CHUNK_BYTES):
            if not value.startswith(chunk, pos):  # compares in place, no slice copied
                return False
            pos += len(chunk)
        return pos == len(value)
    with fake.lock:
        buf = fake._value_buffer
        buf.seek(0)
        while True:
            mine = buf.read(COPY_CHUNK_BYTES)
            theirs = data.read(len(mine) or 1)
            if mine != theirs:
                return False
            if not mine:
                return True
