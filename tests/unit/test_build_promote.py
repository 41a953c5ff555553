"""Promotion of a built slug from its staging key to its content-addressed key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from nomadpaas.build import _promote
from nomadpaas.errors import BuildFailed
from nomadpaas.storage import LocalStorage

SLUG = b"\x1f\x8b pretend this is a slug"
SHA = hashlib.sha256(SLUG).hexdigest()
MD5 = hashlib.md5(SLUG, usedforsecurity=False).hexdigest()
STAGING = "slugs/web/staging/b1.tar.gz"


class CountingStorage(LocalStorage):
    """LocalStorage that counts the bytes it hands out (a copy hands none)."""

    downloads = 0

    def get_file(self, key: str, path: str | Path, **kwargs: object) -> None:
        type(self).downloads += 1
        super().get_file(key, path)


@pytest.fixture
def store(tmp_path: Path) -> CountingStorage:
    CountingStorage.downloads = 0
    s = CountingStorage(tmp_path / "s3")
    s.put_bytes(STAGING, SLUG, content_type="application/gzip")
    return s


def test_with_the_recorded_md5_the_slug_is_copied_not_downloaded(store: CountingStorage) -> None:
    final = _promote(store, STAGING, "web", SHA, MD5)
    assert final == f"slugs/web/{SHA}.tar.gz"
    assert store.get_bytes(final) == SLUG and not store.exists(STAGING)
    assert CountingStorage.downloads == 0


def test_a_replaced_staging_slug_is_refused_and_nothing_is_promoted(store: CountingStorage) -> None:
    store.put_bytes(STAGING, b"something else")
    with pytest.raises(BuildFailed, match="corrupted or replaced"):
        _promote(store, STAGING, "web", SHA, MD5)
    assert not store.exists(f"slugs/web/{SHA}.tar.gz")


def test_without_an_md5_the_sha256_is_checked_on_the_bytes(store: CountingStorage) -> None:
    final = _promote(store, STAGING, "web", SHA)
    assert store.get_bytes(final) == SLUG and CountingStorage.downloads == 1
    store.put_bytes(STAGING, b"tampered")
    store.delete(final)
    with pytest.raises(BuildFailed, match="sha256"):
        _promote(store, STAGING, "web", SHA)


def test_an_existing_slug_with_the_same_digest_is_kept(store: CountingStorage) -> None:
    store.put_bytes(f"slugs/web/{SHA}.tar.gz", SLUG)
    assert _promote(store, STAGING, "web", SHA, MD5) == f"slugs/web/{SHA}.tar.gz"
    assert not store.exists(STAGING) and CountingStorage.downloads == 0
