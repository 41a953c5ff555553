"""Unit tests of LocalStorage, the directory-backed fake of the Storage protocol."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from nomadpaas.errors import InvalidInput, NotFound
from nomadpaas.storage import LocalStorage, Storage


def test_local_storage_round_trip_and_prefix_operations(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "root")
    assert isinstance(store, Storage)
    store.ensure_bucket()
    store.put_bytes(
        "slugs/web/a.tar.gz", b"slug", content_type="application/gzip", metadata={"k": "v"}
    )
    src = tmp_path / "src"
    src.write_bytes(b"x" * 3_000_000)
    seen: list[tuple[int, int]] = []
    store.put_file("sources/web/b.tar.gz", src, on_progress=lambda a, b: seen.append((a, b)))
    assert seen[-1] == (3_000_000, 3_000_000)

    info = store.head("slugs/web/a.tar.gz")
    assert (info.size, info.content_type, dict(info.metadata)) == (
        4,
        "application/gzip",
        {"k": "v"},
    )
    assert store.get_bytes("slugs/web/a.tar.gz") == b"slug"
    store.get_file("sources/web/b.tar.gz", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    assert [o.key for o in store.list_prefix("")] == ["slugs/web/a.tar.gz", "sources/web/b.tar.gz"]

    assert store.delete_prefix("slugs/") == 1
    assert not store.exists("slugs/web/a.tar.gz")
    with pytest.raises(NotFound):
        store.get_bytes("slugs/web/a.tar.gz")
    store.delete("slugs/web/a.tar.gz")  # missing: not an error


def test_local_storage_refuses_keys_that_would_escape(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    with pytest.raises(InvalidInput):
        store.put_bytes("../outside", b"x")
    assert not (tmp_path.parent / "outside").exists()


def test_local_storage_copy(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    store.put_bytes("slugs/a/staging/1", b"slug", content_type="application/gzip",
                    metadata={"k": "v"})  # fmt: skip
    info = store.copy("slugs/a/staging/1", "slugs/a/final")
    assert info.etag == hashlib.md5(b"slug", usedforsecurity=False).hexdigest()
    assert (info.size, info.content_type, dict(info.metadata)) == (
        4,
        "application/gzip",
        {"k": "v"},
    )
    assert store.get_bytes("slugs/a/final") == b"slug"
    with pytest.raises(NotFound):
        store.copy("slugs/a/none", "slugs/a/x")


def test_copy_if_match_copies_only_an_unchanged_source(tmp_path: Path) -> None:
    from nomadpaas.errors import Conflict
    from nomadpaas.storage import LocalStorage

    store = LocalStorage(tmp_path)
    store.put_bytes("a", b"one")
    etag = store.head("a").etag
    assert store.copy("a", "b", if_match=etag).etag == etag
    store.put_bytes("a", b"two")
    with pytest.raises(Conflict):
        store.copy("a", "c", if_match=etag)
    assert not store.exists("c") and store.get_bytes("b") == b"one"
