"""Unit tests of the object-key layout: the shapes of DESIGN.md §3, nothing escapes a prefix."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from nomadpaas.errors import InvalidInput
from nomadpaas.storage import keys

DIGEST = hashlib.sha256(b"x").hexdigest()


def test_keys_follow_the_design_layout() -> None:
    assert keys.source_key("web", DIGEST) == f"sources/web/{DIGEST}.tar.gz"
    assert keys.slug_key("web", DIGEST) == f"slugs/web/{DIGEST}.tar.gz"
    assert keys.cache_key("web", "heroku-24") == "cache/web/heroku-24.tar.gz"
    assert keys.build_record_key("web", "01J9Z-abc_1") == "builds/web/01J9Z-abc_1.json"
    assert keys.app_prefixes("web") == ("sources/web/", "slugs/web/", "cache/web/", "builds/web/")


@pytest.mark.parametrize(
    "app",
    ["", "../etc", "a/b", "..", ".", "Web", "web app", "-web", "a" * 64, "web\n", "wéb", "a\\b"],
)
def test_bad_app_names_are_rejected_everywhere(app: str) -> None:
    for build in (
        lambda: keys.source_key(app, DIGEST),
        lambda: keys.slug_key(app, DIGEST),
        lambda: keys.cache_key(app, "heroku-24"),
        lambda: keys.build_record_key(app, "b1"),
        lambda: keys.app_prefixes(app),
    ):
        with pytest.raises(InvalidInput):
            build()


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "abc",
        DIGEST.upper(),
        DIGEST[:-1] + "g",
        DIGEST + "0",
        "../" + DIGEST[3:],
        f"{DIGEST[:32]}/{DIGEST[33:]}",
    ],
)
def test_bad_digests_are_rejected(digest: str) -> None:
    with pytest.raises(InvalidInput):
        keys.source_key("web", digest)
    with pytest.raises(InvalidInput):
        keys.slug_key("web", digest)


@pytest.mark.parametrize("value", ["..", "../x", "a/b", "", ".hidden", "x\x00"])
def test_traversal_in_stack_or_build_id_is_rejected(value: str) -> None:
    with pytest.raises(InvalidInput):
        keys.cache_key("web", value)
    with pytest.raises(InvalidInput):
        keys.build_record_key("web", value)


@pytest.mark.parametrize(
    "key", ["", "/abs", "a//b", "a/../b", "..", "./a", "a/.", "a\\b", "a\x01b", "x" * 1025]
)
def test_validate_key_rejects_unsafe_keys(key: str) -> None:
    with pytest.raises(InvalidInput):
        keys.validate_key(key)


def test_validate_key_accepts_every_generated_key() -> None:
    for key in (
        keys.source_key("web", DIGEST),
        keys.cache_key("a1", "scalingo-22"),
        keys.build_record_key("web", "b.1"),
        "a b/ü/%2F..x",
    ):
        assert keys.validate_key(key) == key


def test_sha256_file_streams_a_file_larger_than_a_chunk(tmp_path: Path) -> None:
    data = bytes(range(256)) * (keys.HASH_CHUNK_BYTES // 256 * 2 + 3)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert keys.sha256_file(path) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert keys.sha256_file(str(empty)) == hashlib.sha256(b"").hexdigest()
