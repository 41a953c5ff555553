"""Unit tests of the S3 server's durable directory and request parsing (no server)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from nomadpaas.stack.s3persist import DataDirLocked, ObjectStore, StoredBucket, StoredObject
from nomadpaas.stack.s3server import request_target


def obj(
    key: str, data: bytes, etag: str = '"e"', tags: dict[str, str] | None = None
) -> StoredObject:
    return StoredObject(
        bucket="b1b", key=key, size=len(data), etag=etag,
        last_modified="2026-01-01T00:00:00", tags=tags or {},
    )  # fmt: skip


def writer(data: bytes) -> Callable[[IO[bytes]], None]:
    def write(out: IO[bytes]) -> None:
        out.write(data)

    return write


def test_store_keeps_objects_with_any_key_and_sweeps_crash_leftovers(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    store.open()
    store.put_bucket(StoredBucket("b1b", "us-east-1", "123456789012", "2026-01-01T00:00:00+00:00"))
    first = store.put_object(obj("../../etc/passwd", b"one"), writer(b"one"), None)
    second = store.put_object(obj("../../etc/passwd", b"two!", etag='"f"'), writer(b"two!"), first)
    assert not store.data_path(first).exists()  # old generation removed after commit
    kept = store.put_object(obj("k", b"abc"), writer(b"abc"), None)
    retagged = store.put_object(obj("k", b"abc", tags={"t": "1"}), None, kept)
    assert retagged.data == kept.data  # metadata-only change keeps the data file
    bdir = tmp_path / "objects" / "b1b"
    (bdir / "deadbeef.0123.data").write_bytes(b"orphan: written, never committed")
    (bdir / "abc.json.tmp-1").write_text("{half")
    store.close()

    again = ObjectStore(tmp_path)
    again.open()
    buckets, objects = again.load()
    assert [b.name for b in buckets] == ["b1b"]
    assert {o.key: o for o in objects} == {"../../etc/passwd": second, "k": retagged}
    assert not (bdir / "deadbeef.0123.data").exists() and not (bdir / "abc.json.tmp-1").exists()
    assert all(p.parent == bdir for p in bdir.iterdir())  # nothing escaped the bucket dir
    again.delete_object(second)
    assert [o.key for o in again.load()[1]] == ["k"]
    again.close()


def test_record_whose_data_is_truncated_is_skipped(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    store.open()
    store.put_bucket(StoredBucket("b1b", "us-east-1", "123456789012", ""))
    saved = store.put_object(obj("k", b"abcdef"), writer(b"abcdef"), None)
    store.data_path(saved).write_bytes(b"abc")
    assert store.load()[1] == []
    store.close()


def test_failed_data_write_leaves_no_file_and_no_record(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    store.open()
    store.put_bucket(StoredBucket("b1b", "us-east-1", "123456789012", ""))

    def broken(out: IO[bytes]) -> None:
        out.write(b"partial")
        raise ValueError("I/O operation on closed file")

    with pytest.raises(ValueError):
        store.put_object(obj("k", b"x"), broken, None)
    assert list((tmp_path / "objects" / "b1b").iterdir()) == []
    store.close()


def test_data_dir_is_locked_while_open(tmp_path: Path) -> None:
    first = ObjectStore(tmp_path)
    first.open()
    with pytest.raises(DataDirLocked):
        ObjectStore(tmp_path).open()
    first.close()
    second = ObjectStore(tmp_path)
    second.open()
    second.close()


@pytest.mark.parametrize(
    ("host", "raw_uri", "target"),
    [
        (
            "127.0.0.1:9000",
            "/nomadpaas/slugs/web/a.tar.gz?uploadId=1",
            ("nomadpaas", "slugs/web/a.tar.gz"),
        ),
        ("localhost:9000", "/nomadpaas/a%2Fb%20c", ("nomadpaas", "a/b c")),
        ("127.0.0.1:9000", "/nomadpaas?delete", ("nomadpaas", None)),
        ("127.0.0.1:9000", "/nomadpaas/", ("nomadpaas", None)),
        ("[::1]:9000", "/b/k", ("b", "k")),
        ("s3server:9000", "/b/k/", ("b", "k/")),
        ("127.0.0.1:9000", "http://127.0.0.1:9000/b/k?x=1", ("b", "k")),
        ("127.0.0.1:9000", "/", None),
        ("mybucket.s3.example.com", "/k", None),  # virtual-hosted: sync everything
    ],
)
def test_request_target_parses_path_style_like_moto(
    host: str, raw_uri: str, target: tuple[str, str | None] | None
) -> None:
    assert request_target({"HTTP_HOST": host, "RAW_URI": raw_uri}) == target
