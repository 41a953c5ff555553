"""Promotion of a built slug from its staging key to its content-addressed key (storage.promote)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from nomadpaas.errors import BuildFailed
from nomadpaas.storage import LocalStorage
from nomadpaas.storage.base import ObjectInfo
from nomadpaas.storage.promote import promote

SLUG = b"\x1f\x8b pretend this is a slug"
SHA = hashlib.sha256(SLUG).hexdigest()
MD5 = hashlib.md5(SLUG, usedforsecurity=False).hexdigest()
STAGING = "slugs/web/staging/b1.tar.gz"


class CountingStorage(LocalStorage):
    """LocalStorage that counts the bytes it hands out (a copy hands none) and the keys
    it was asked about."""

    downloads = 0
    heads: list[str] = []  # noqa: RUF012 (reset by the fixture)

    def get_file(self, key: str, path: str | Path, **kwargs: object) -> None:
        type(self).downloads += 1
        super().get_file(key, path)

    def head(self, key: str) -> ObjectInfo:
        type(self).heads.append(key)
        return super().head(key)

    def copy(self, source: str, dest: str, *, if_match: str | None = None) -> ObjectInfo:
        before = list(type(self).heads)
        try:
            return super().copy(source, dest, if_match=if_match)
        finally:  # LocalStorage's copy looks at its result itself; S3's answer carries it
            type(self).heads = before

    def exists(self, key: str) -> bool:
        type(self).heads.append(key)
        return super().exists(key)


@pytest.fixture
def store(tmp_path: Path) -> CountingStorage:
    CountingStorage.downloads = 0
    CountingStorage.heads = []
    s = CountingStorage(tmp_path / "s3")
    s.put_bytes(STAGING, SLUG, content_type="application/gzip")
    return s


def test_with_the_recorded_md5_the_slug_is_copied_not_downloaded(store: CountingStorage) -> None:
    final = promote(store, STAGING, "web", SHA, MD5)
    assert final == f"slugs/web/{SHA}.tar.gz"
    # One look, at the staging slug (its ETag), none at the final key.
    assert CountingStorage.heads == [STAGING]
    assert store.get_bytes(final) == SLUG and not store.exists(STAGING)
    assert CountingStorage.downloads == 0


def test_a_staging_look_taken_ahead_saves_the_request(store: CountingStorage) -> None:
    ahead = store.head(STAGING)
    CountingStorage.heads = []
    assert promote(store, STAGING, "web", SHA, MD5, ahead) == f"slugs/web/{SHA}.tar.gz"
    assert CountingStorage.heads == []


def test_a_look_ahead_with_another_etag_is_refused_before_any_write(
    store: CountingStorage,
) -> None:
    wrong = ObjectInfo(key=STAGING, size=len(SLUG), etag="0" * 32)
    with pytest.raises(BuildFailed, match="corrupted or replaced"):
        promote(store, STAGING, "web", SHA, MD5, wrong)
    assert not store.exists(f"slugs/web/{SHA}.tar.gz")


def test_a_corrupted_slug_never_touches_an_existing_slug_of_that_digest(
    store: CountingStorage,
) -> None:
    final = f"slugs/web/{SHA}.tar.gz"
    store.put_bytes(final, SLUG)  # an earlier release's slug
    store.put_bytes(STAGING, b"something else")
    with pytest.raises(BuildFailed, match="corrupted or replaced"):
        promote(store, STAGING, "web", SHA, MD5)
    assert store.get_bytes(final) == SLUG


class IgnoringStorage(CountingStorage):
    """A store that ignores the copy condition and whose copy corrupts the bytes."""

    def copy(self, source: str, dest: str, *, if_match: str | None = None) -> ObjectInfo:
        self.put_bytes(dest, b"mangled on the way")
        return self.head(dest)


def test_a_copy_whose_etag_is_wrong_is_removed_and_refused(tmp_path: Path) -> None:
    store = IgnoringStorage(tmp_path / "s3")
    store.put_bytes(STAGING, SLUG)
    with pytest.raises(BuildFailed, match="corrupted or replaced"):
        promote(store, STAGING, "web", SHA, MD5)
    assert not store.exists(f"slugs/web/{SHA}.tar.gz")


def test_a_slug_replaced_between_the_look_and_the_copy_is_refused(
    store: CountingStorage,
) -> None:
    ahead = store.head(STAGING)
    store.put_bytes(STAGING, b"swapped after the look")
    with pytest.raises(BuildFailed, match="corrupted or replaced"):
        promote(store, STAGING, "web", SHA, MD5, ahead)
    assert not store.exists(f"slugs/web/{SHA}.tar.gz")


def test_a_replaced_staging_slug_is_refused_and_nothing_is_promoted(store: CountingStorage) -> None:
    store.put_bytes(STAGING, b"something else")
    with pytest.raises(BuildFailed, match="corrupted or replaced"):
        promote(store, STAGING, "web", SHA, MD5)
    assert not store.exists(f"slugs/web/{SHA}.tar.gz")


def test_without_an_md5_the_sha256_is_checked_on_the_bytes(store: CountingStorage) -> None:
    final = promote(store, STAGING, "web", SHA)
    assert store.get_bytes(final) == SLUG and CountingStorage.downloads == 1
    store.put_bytes(STAGING, b"tampered")
    store.delete(final)
    with pytest.raises(BuildFailed, match="sha256"):
        promote(store, STAGING, "web", SHA)


def test_an_existing_slug_with_the_same_digest_is_kept(store: CountingStorage) -> None:
    store.put_bytes(f"slugs/web/{SHA}.tar.gz", SLUG)
    assert promote(store, STAGING, "web", SHA, MD5) == f"slugs/web/{SHA}.tar.gz"
    assert not store.exists(STAGING) and CountingStorage.downloads == 0


class SlowDeleteStorage(CountingStorage):
    """Deletes block until `release` is set, and say on which thread they ran."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        import threading

        self.release = threading.Event()
        self.deleted_on: list[str] = []

    def delete(self, key: str) -> None:
        import threading

        assert self.release.wait(30), "the delete was never let through"
        self.deleted_on.append(threading.current_thread().name)
        super().delete(key)


def test_inside_deferred_cleanup_the_staging_delete_overlaps_and_is_joined(
    tmp_path: Path,
) -> None:
    from nomadpaas.storage.promote import deferred_cleanup

    store = SlowDeleteStorage(tmp_path / "s3")
    store.put_bytes(STAGING, SLUG)
    with deferred_cleanup():
        # Returns while the delete is still blocked: the caller's next step overlaps it.
        assert promote(store, STAGING, "web", SHA, MD5) == f"slugs/web/{SHA}.tar.gz"
        assert store.exists(STAGING) and store.deleted_on == []
        store.release.set()
    # The block joined it before ending: nothing is left running or left over.
    assert not store.exists(STAGING)
    assert store.deleted_on == ["nomadpaas-staging-delete"]


def test_outside_deferred_cleanup_the_delete_is_done_before_promote_returns(
    tmp_path: Path,
) -> None:
    store = SlowDeleteStorage(tmp_path / "s3")
    store.put_bytes(STAGING, SLUG)
    store.release.set()
    promote(store, STAGING, "web", SHA, MD5)
    assert not store.exists(STAGING) and len(store.deleted_on) == 1


def test_a_corrupted_slug_is_refused_inside_deferred_cleanup_too(store: CountingStorage) -> None:
    from nomadpaas.storage.promote import deferred_cleanup

    store.put_bytes(STAGING, b"something else")
    with deferred_cleanup(), pytest.raises(BuildFailed, match="corrupted or replaced"):
        promote(store, STAGING, "web", SHA, MD5)
    assert not store.exists(f"slugs/web/{SHA}.tar.gz")


def test_without_a_look_the_conditional_copy_alone_promotes(store: CountingStorage) -> None:
    final = promote(store, STAGING, "web", SHA, MD5, look=False)
    assert final == f"slugs/web/{SHA}.tar.gz" and CountingStorage.heads == []
    assert store.get_bytes(final) == SLUG and not store.exists(STAGING)


def test_without_a_look_a_replaced_slug_never_touches_an_existing_one(
    store: CountingStorage,
) -> None:
    final = f"slugs/web/{SHA}.tar.gz"
    store.put_bytes(final, SLUG)  # an earlier release's slug
    store.put_bytes(STAGING, b"something else")
    with pytest.raises(BuildFailed, match="corrupted or replaced"):
        promote(store, STAGING, "web", SHA, MD5, look=False)
    assert store.get_bytes(final) == SLUG and CountingStorage.heads == []
