"""Unit tests of the S3 server's durable directory and request parsing (no server)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from nomadpaas.stack.s3persist import (
    DataDirLocked,
    ObjectStore,
    StoredBucket,
    StoredObject,
    key_hash,
)
from nomadpaas.stack.s3server import copy_source, request_target


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


def reads(data: bytes) -> Callable[[IO[bytes]], bool]:
    """The check a copy passes to the store: does the linked file hold `data`?"""
    return lambda f: f.read() == data


def bucket_files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "objects" / "b1b").iterdir())


def test_a_copy_shares_the_data_file_and_outlives_its_source(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    store.open()
    store.put_bucket(StoredBucket("b1b", "us-east-1", "123456789012", ""))
    source = store.put_object(obj("staging/1", b"slug bytes"), writer(b"slug bytes"), None)

    def never(out: IO[bytes]) -> None:
        raise AssertionError("a copy of stored bytes must not write them again")

    copy = store.put_object(
        obj("slugs/abc", b"slug bytes"), never, None, share=(source, reads(b"slug bytes"))
    )
    first, second = store.data_path(source).stat(), store.data_path(copy).stat()
    assert copy.data != source.data and first.st_ino == second.st_ino and second.st_nlink == 2
    store.delete_object(source)
    assert store.data_path(copy).stat().st_nlink == 1
    store.close()

    again = ObjectStore(tmp_path)
    again.open()
    assert again.load()[1] == [copy]
    assert again.data_path(copy).read_bytes() == b"slug bytes"
    again.close()


def test_a_copy_whose_source_holds_other_bytes_or_is_gone_writes_its_own(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    store.open()
    store.put_bucket(StoredBucket("b1b", "us-east-1", "123456789012", ""))
    source = store.put_object(obj("src", b"old bytes"), writer(b"old bytes"), None)
    other = store.put_object(
        obj("dst", b"new bytes"), writer(b"new bytes"), None, share=(source, reads(b"new bytes"))
    )
    assert store.data_path(other).stat().st_ino != store.data_path(source).stat().st_ino
    assert store.data_path(other).read_bytes() == b"new bytes"
    assert store.data_path(source).stat().st_nlink == 1  # the rejected link was removed
    store.delete_object(source)
    gone = store.put_object(
        obj("dst2", b"old bytes"), writer(b"old bytes"), None, share=(source, reads(b"old bytes"))
    )
    assert store.data_path(gone).read_bytes() == b"old bytes"
    assert len(bucket_files(tmp_path)) == 4  # two records, two data files: nothing stray
    store.close()


def test_torn_in_place_record_is_swept_and_its_key_can_be_written_again(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    store.open()
    store.put_bucket(StoredBucket("b1b", "us-east-1", "123456789012", ""))
    saved = store.put_object(obj("k", b"abc"), writer(b"abc"), None)
    assert not any(".tmp-" in name for name in bucket_files(tmp_path))
    sidecar = tmp_path / "objects" / "b1b" / f"{saved.data.split('.')[0]}.json"
    # A crash while a new key's record was written in place: torn JSON, data never named.
    sidecar.write_text(sidecar.read_text()[:40])
    assert store.load()[1] == []
    assert bucket_files(tmp_path) == []  # the torn record and its data file are gone
    sidecar.write_text("{")  # torn again, now while the server runs: the write still lands
    again = store.put_object(obj("k", b"xyz"), writer(b"xyz"), None)
    assert store.load()[1] == [again]
    store.close()


def test_a_link_left_by_a_crash_before_its_commit_is_swept_and_the_source_kept(
    tmp_path: Path,
) -> None:
    store = ObjectStore(tmp_path)
    store.open()
    store.put_bucket(StoredBucket("b1b", "us-east-1", "123456789012", ""))
    source = store.put_object(obj("src", b"bytes"), writer(b"bytes"), None)
    orphan = store.data_path(source).with_name("0123abcd.feed.data")  # a copy's link, uncommitted
    orphan.hardlink_to(store.data_path(source))
    assert store.load()[1] == [source]
    assert not orphan.exists() and store.data_path(source).stat().st_nlink == 1
    assert store.data_path(source).read_bytes() == b"bytes"
    store.close()


@pytest.mark.parametrize(
    ("method", "header", "query", "source"),
    [
        (
            "PUT",
            "/nomadpaas/slugs/web/staging/1.tar.gz",
            "",
            ("nomadpaas", "slugs/web/staging/1.tar.gz"),
        ),
        ("PUT", "nomadpaas/a%2Fb%20c?versionId=3", "", ("nomadpaas", "a/b c")),
        ("PUT", "/nomadpaas/k", "partNumber=1&uploadId=u", None),  # UploadPartCopy
        ("PUT", "/nomadpaas", "", None),
        ("POST", "/nomadpaas/k", "", None),
        ("PUT", "", "", None),
    ],
)
def test_copy_source_names_what_a_copy_object_copies(
    method: str, header: str, query: str, source: tuple[str, str] | None
) -> None:
    environ = {"REQUEST_METHOD": method, "QUERY_STRING": query}
    if header:
        environ["HTTP_X_AMZ_COPY_SOURCE"] = header
    assert copy_source(environ) == source


def test_small_objects_keep_their_bytes_in_the_sidecar(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path, inline_max_bytes=16)
    store.open()
    store.put_bucket(StoredBucket("b1b", "us-east-1", "123456789012", ""))
    small = store.put_object(obj("k", b"\x00small\xff"), writer(b"\x00small\xff"), None)
    assert (small.data, small.inline) == ("", b"\x00small\xff")
    assert bucket_files(tmp_path) == [f"{key_hash('k')}.json"]  # one file: no data file
    empty = store.put_object(obj("empty", b""), writer(b""), None)
    big = store.put_object(obj("k", b"y" * 17), writer(b"y" * 17), small)
    assert big.inline is None and store.data_path(big).read_bytes() == b"y" * 17
    small_again = store.put_object(obj("k", b"tiny"), writer(b"tiny"), big)
    assert not store.data_path(big).exists()  # the big generation went with its record
    store.close()

    again = ObjectStore(tmp_path)  # records say where the bytes are, whatever the limit
    again.open()
    loaded = {o.key: o for o in again.load()[1]}
    assert loaded == {"k": small_again, "empty": empty}
    with again.open_data(loaded["k"]) as f:
        assert f.read() == b"tiny"
    again.delete_object(loaded["k"])
    again.delete_object(loaded["empty"])
    assert bucket_files(tmp_path) == [] and again.load()[1] == []
    again.close()
