"""Data files written ahead of their sync: committed when current, discarded otherwise."""

from __future__ import annotations

import io
import json
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
from testsupport import ServerProcess, run_concurrently

from nomadpaas.stack.s3mirror import Mirror, _same_value
from nomadpaas.stack.s3persist import ObjectStore
from nomadpaas.storage.s3 import S3Storage

INLINE_MAX = 64 * 1024
BIG = 100 * 1024  # a data file, not inline
SPOOLED = 6 * 1024 * 1024  # past moto's in-memory buffer: a temporary file


class RecordingStore(ObjectStore):
    """An ObjectStore that remembers the data files written ahead."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, inline_max_bytes=INLINE_MAX)
        self.prewritten: list[str] = []

    def write_data_file(self, bucket: str, key: str, data: bytes) -> str:
        name = super().write_data_file(bucket, key, data)
        self.prewritten.append(name)
        return name


@pytest.fixture
def mirrored(tmp_path: Path) -> Any:
    """(moto backend in this process, a fresh bucket in it, mirror, store)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    bucket = f"prewrite-{uuid.uuid4().hex[:12]}"
    backend.create_bucket(bucket, "us-east-1")
    store = RecordingStore(tmp_path / "data")
    store.open()
    mirror = Mirror(store)
    mirror.sync_bucket(bucket)
    try:
        yield backend, bucket, mirror, store
    finally:
        for key in list(backend.get_bucket(bucket).keys):
            backend.delete_object(bucket, key)
        backend.delete_bucket(bucket)
        store.close()


def data_files(store: ObjectStore, bucket: str) -> set[str]:
    return {p.name for p in (store.root / "objects" / bucket).glob("*.data")}


def record(store: ObjectStore, bucket: str, key: str) -> dict[str, Any]:
    from nomadpaas.stack.s3persist import key_hash

    path = store.root / "objects" / bucket / f"{key_hash(key)}.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))


def test_the_prewritten_file_is_the_one_committed(mirrored: Any) -> None:
    backend, bucket, mirror, store = mirrored
    value = os.urandom(BIG)
    fake = backend.put_object(bucket, "slug", value)
    assert mirror.prewrite(fake)
    mirror.sync_key(bucket, "slug")
    mirror.release([fake])
    assert len(store.prewritten) == 1
    assert record(store, bucket, "slug")["Data"] == store.prewritten[0]
    assert data_files(store, bucket) == {store.prewritten[0]}
    assert (store.root / "objects" / bucket / store.prewritten[0]).read_bytes() == value


def test_a_prewrite_overtaken_by_a_newer_object_is_discarded(mirrored: Any) -> None:
    backend, bucket, mirror, store = mirrored
    first = backend.put_object(bucket, "slug", os.urandom(BIG))
    assert mirror.prewrite(first)
    newer = os.urandom(BIG + 1)
    backend.put_object(bucket, "slug", newer)  # not prewritten: written by the sync
    mirror.sync_key(bucket, "slug")
    committed = record(store, bucket, "slug")["Data"]
    assert committed not in store.prewritten
    mirror.release([first])
    assert data_files(store, bucket) == {committed}
    assert (store.root / "objects" / bucket / committed).read_bytes() == newer


def test_a_prewrite_of_another_size_is_never_committed(mirrored: Any) -> None:
    backend, bucket, mirror, store = mirrored
    fake = backend.put_object(bucket, "slug", os.urandom(BIG))
    assert mirror.prewrite(fake)
    fake.value = grown = os.urandom(BIG + 5)  # moto never does this; the guard must hold
    mirror.sync_key(bucket, "slug")
    mirror.release([fake])
    committed = record(store, bucket, "slug")["Data"]
    assert committed not in store.prewritten and data_files(store, bucket) == {committed}
    assert (store.root / "objects" / bucket / committed).read_bytes() == grown


def test_small_and_spooled_objects_are_not_prewritten(mirrored: Any) -> None:
    backend, bucket, mirror, store = mirrored
    assert not mirror.prewrite(backend.put_object(bucket, "record", os.urandom(INLINE_MAX)))
    spooled = backend.put_object(bucket, "huge", os.urandom(SPOOLED))
    assert not mirror.prewrite(spooled)  # moto reads its temporary file for the ETag
    assert store.prewritten == []


@pytest.mark.parametrize("size", [BIG, SPOOLED])
def test_same_value_compares_every_byte(mirrored: Any, size: int) -> None:
    backend, bucket, _, _ = mirrored
    value = os.urandom(size)
    fake = backend.put_object(bucket, "v", value)
    changed = value[:-1] + bytes([value[-1] ^ 1])
    assert _same_value(fake, io.BytesIO(value))
    for other in (changed, value[:-1], value + b"x", b""):
        assert not _same_value(fake, io.BytesIO(other))


def test_overwrites_racing_leave_only_committed_data_files(s3: ServerProcess) -> None:
    store = S3Storage(s3.url, "nomadpaas", region="us-east-1", access_key_id="k",
                      secret_access_key="s")  # fmt: skip
    store.ensure_bucket()

    def writer(n: int) -> None:
        for i in range(5):
            store.put_bytes("shared", bytes([n, i]) * (BIG // 2))
            store.put_bytes(f"own/{n}", bytes([n, i]) * BIG)

    run_concurrently(writer, 4)
    bdir = s3.data_dir / "objects" / "nomadpaas"
    named = {json.loads(p.read_text(encoding="utf-8"))["Data"] for p in bdir.glob("*.json")}
    assert {p.name for p in bdir.glob("*.data")} == named  # nothing left behind
    shared = store.get_bytes("shared")
    s3.kill(signal.SIGKILL)
    s3.start()
    assert store.get_bytes("shared") == shared
    for n in range(4):
        assert store.get_bytes(f"own/{n}") == bytes([n, 4]) * BIG
