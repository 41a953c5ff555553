"""The node-local build cache tier: slots, locks, tags, pruning, and the build task using
them (objects by file:// URL; FileTransfer's ETags change with every store)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from slugbuilder.buildpack_support import RELEASE_UNLESS_FAIL, bash, write_buildpack
from slugbuilder.localcache_support import APP, STACK, Node

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder import task as task_module
from nomadpaas.slugbuilder.localcache import LocalCache, Tag
from nomadpaas.slugbuilder.task import FileTransfer


def test_from_env_ignores_unset_unresolved_and_relative_values(tmp_path: Path) -> None:
    assert LocalCache.from_env(None) is None
    assert LocalCache.from_env("") is None
    assert LocalCache.from_env("${meta.nomadpaas.build_cache_dir}") is None
    assert LocalCache.from_env("relative/dir") is None
    cache = LocalCache.from_env(str(tmp_path / "bc"))
    assert cache is not None and cache.root == str(tmp_path / "bc")


@pytest.mark.parametrize("app", ["", "..", ".", "a/b", "Web", "-x", "x" * 64, "a\x00"])
def test_only_plain_names_get_a_slot(tmp_path: Path, app: str) -> None:
    assert LocalCache(tmp_path / "bc").acquire(app, STACK) is None
    assert LocalCache(tmp_path / "bc").acquire(APP, app or "..") is None
    assert not any((tmp_path / "bc").glob("**/lock"))


def test_a_slot_is_held_by_one_build_at_a_time(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path / "bc")
    first = cache.acquire(APP, STACK)
    assert first is not None
    assert cache.acquire(APP, STACK) is None  # busy: the second build goes to S3
    other = cache.acquire("api", STACK)  # other apps are independent
    assert other is not None and other.tree != first.tree
    first.release()
    first.release()  # idempotent
    again = cache.acquire(APP, STACK)
    assert again is not None
    again.release()
    other.release()
    assert oct((tmp_path / "bc" / APP).stat().st_mode & 0o777) == "0o700"


def test_a_build_waits_a_bounded_time_for_a_busy_slot(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path / "bc")
    held = cache.acquire(APP, STACK)
    assert held is not None
    started = time.monotonic()
    assert cache.acquire(APP, STACK, wait_s=0.3) is None  # still held when the wait ends
    assert time.monotonic() - started >= 0.3
    # The previous build finishes saving its cache during the wait: the slot is taken.
    timer = threading.Timer(0.2, held.release)
    timer.start()
    try:
        started = time.monotonic()
        slot = cache.acquire(APP, STACK, wait_s=30.0)
        assert slot is not None and 0.2 <= time.monotonic() - started < 10.0
        slot.release()
    finally:
        timer.cancel()
        held.release()


def test_a_tag_is_taken_away_while_the_tree_is_in_use(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path / "bc")
    slot = cache.acquire(APP, STACK)
    assert slot is not None
    slot.reset_tree()
    assert slot.take() is None
    slot.record(Tag("http://s3/b/cache/web/x.tar.gz", '"e1"', 10))
    assert slot.take() == Tag("http://s3/b/cache/web/x.tar.gz", '"e1"', 10)
    assert slot.take() is None  # a build killed now leaves no tag: the tree is not trusted
    slot.release()


def _slot_with(cache: LocalCache, app: str, size: int, used: float, *, tagged: bool = True) -> Path:
    slot = cache.acquire(app, STACK)
    assert slot is not None
    (Path(slot.reset_tree()) / "f").write_bytes(b"x" * size)
    if tagged:
        slot.record(Tag(f"http://s3/{app}", '"e"', size))
    slot.release()
    os.utime(os.path.join(slot.dir, "lock"), (used, used))
    return Path(slot.dir)


def test_prune_removes_stale_untagged_and_least_recently_used_slots(tmp_path: Path) -> None:
    now = 1_000_000_000.0
    cache = LocalCache(tmp_path / "bc", max_age_s=100, max_bytes=250, max_slots=10)
    stale = _slot_with(cache, "stale", 10, now - 200)
    untagged = _slot_with(cache, "untagged", 10, now, tagged=False)
    old = _slot_with(cache, "old", 100, now - 50)
    mid = _slot_with(cache, "mid", 100, now - 40)
    new = _slot_with(cache, "new", 100, now - 30)
    busy = cache.acquire("mid", STACK)  # a running build's slot is never removed
    assert busy is not None
    # Buildpacks' node facts live beside the slots and are not a slot (no tag, no lock).
    facts = tmp_path / "bc" / ".buildpacks" / "python"
    facts.mkdir(parents=True)
    (facts / "probe").write_text("3.11")

    removed = cache.prune(now)

    # Then 200 bytes are left: under the cap.
    assert set(removed) == {str(stale), str(untagged), str(old)}
    assert not stale.exists() and not (tmp_path / "bc" / "stale").exists()
    assert mid.is_dir() and new.is_dir()
    busy.release()
    cache.max_slots = 1
    assert cache.prune(now) == [str(new)]  # acquiring `mid` made it the most recently used
    assert (mid / "tree" / "f").is_file()
    assert sorted(p.name for p in facts.iterdir()) == ["probe"]  # untouched: no lock made


# -- the build task with a slot ---------------------------------------------------------


@pytest.fixture
def buildpacks(tmp_path: Path) -> Path:
    """`counter` bumps CACHE_DIR/n and says where CACHE_DIR is; `reader` only reads it;
    either fails in bin/release when the app has a file named FAIL."""
    scripts = {
        "counter": 'n=$(( $(cat "$2/n" 2>/dev/null || echo 0) + 1 )); echo $n > "$2/n"\n'
        'echo "       build number $n in $2"',
        "reader": 'echo "       cache says $(cat "$2/n" 2>/dev/null || echo nothing) in $2"',
    }
    for name, compile_body in scripts.items():
        write_buildpack(
            tmp_path / "bps",
            name,
            {"detect": bash(f"echo {name}"), "compile": bash(compile_body),
             "release": RELEASE_UNLESS_FAIL},
        )  # fmt: skip
    return tmp_path / "bps"


def _said(lines: list[str], text: str) -> bool:
    return any(text in line for line in lines)


def test_a_rebuild_on_the_same_node_uses_its_tree_without_download(
    tmp_path: Path, buildpacks: Path
) -> None:
    node = Node(tmp_path, buildpacks)
    lines, _ = node.build("counter")
    assert f"       build number 1 in {node.tree}" in lines  # the slot is CACHE_DIR
    assert _said(lines, "Build cache saved") and node.cache_object.is_file()

    lines, timings = node.build("reader")
    assert _said(lines, "this node's copy is current")
    assert f"       cache says 1 in {node.tree}" in lines
    assert _said(lines, "Build cache unchanged")
    assert "restore_cache" not in timings.to_dict()  # no extraction at all

    lines, _ = node.build("counter")  # changes the cache: saved, and still current here
    assert f"       build number 2 in {node.tree}" in lines
    assert _said(lines, "Build cache saved")
    lines, _ = node.build("reader")
    assert _said(lines, "this node's copy is current")
    assert any(line.startswith("       cache says 2") for line in lines)


def test_a_cache_saved_by_another_node_replaces_this_node_s_tree(
    tmp_path: Path, buildpacks: Path
) -> None:
    here, there = Node(tmp_path, buildpacks, "here"), Node(tmp_path, buildpacks, "there")
    here.build("counter")  # n=1 here and in S3
    lines, _ = there.build("counter")  # restored from S3 there: n=2 in S3
    assert _said(lines, "build number 2") and not _said(lines, "this node's copy")
    lines, _ = here.build("reader")  # S3 changed since: the 304 does not happen
    assert not _said(lines, "this node's copy is current")
    assert any(line.startswith("       cache says 2") for line in lines)
    lines, _ = here.build("reader")
    assert _said(lines, "this node's copy is current")


def test_a_failed_build_cannot_poison_the_next_one(tmp_path: Path, buildpacks: Path) -> None:
    node = Node(tmp_path, buildpacks)
    node.build("counter")  # n=1 saved
    with pytest.raises(BuildFailed, match="bin/release"):
        node.build("counter", fail=True)  # wrote n=2 into the tree, then failed
    lines, _ = node.build("counter")
    # The tree was not trusted: S3's copy (n=1) came back, so this is build number 2.
    assert not _said(lines, "this node's copy is current")
    assert any(line.startswith("       build number 2 ") for line in lines)


@pytest.mark.parametrize(
    ("buildpack", "fail", "error"),
    [
        # A compile that fails without touching the cache.
        ("reader", True, None),
        # It fails choosing its buildpack, before the tree's fingerprint is taken (while
        # the first detect runs): the tree is as restored.
        ("no-such-buildpack", False, "Unknown buildpack"),
    ],
)
def test_a_failed_build_that_left_the_cache_alone_keeps_the_node_s_copy(
    tmp_path: Path, buildpacks: Path, buildpack: str, fail: bool, error: str | None
) -> None:
    node = Node(tmp_path, buildpacks)
    node.build("counter")
    with pytest.raises(BuildFailed, match=error):
        node.build(buildpack, fail=fail)
    lines, _ = node.build("reader")
    assert _said(lines, "this node's copy is current")
    assert any(line.startswith("       cache says 1") for line in lines)


def test_a_busy_slot_falls_back_to_the_s3_path(
    tmp_path: Path, buildpacks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(task_module, "SLOT_WAIT_S", 0.2)  # the holder never lets go here
    node = Node(tmp_path, buildpacks)
    node.build("counter")
    held = node.cache.acquire(APP, STACK)  # another build of the app on this node
    assert held is not None
    try:
        lines, timings = node.build("counter")
    finally:
        held.release()
    said = next(line for line in lines if "build number" in line)
    assert said.startswith("       build number 2 ") and str(node.tree) not in said
    assert "restore_cache" in timings.to_dict()
    assert (node.tree / "n").read_text().strip() == "1"  # the slot was not touched
    lines, _ = node.build("counter")  # S3 moved on (n=2): the slot is refreshed
    assert not _said(lines, "this node's copy is current")
    assert any(line.startswith("       build number 3 ") for line in lines)


def test_a_cache_that_cannot_be_uploaded_is_not_trusted_next_time(
    tmp_path: Path, buildpacks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = Node(tmp_path, buildpacks)
    node.build("counter")
    original = FileTransfer.store

    def refuse_cache(self: FileTransfer, path: Path, url: str) -> str | None:
        if "/cache/" in url:
            raise OSError("S3 said no")
        return original(self, path, url)

    monkeypatch.setattr(FileTransfer, "store", refuse_cache)
    lines, _ = node.build("counter")  # n=2 here, S3 still n=1
    assert _said(lines, "the build cache was not saved")
    monkeypatch.undo()
    lines, _ = node.build("counter")
    assert not _said(lines, "this node's copy is current")
    assert any(line.startswith("       build number 2 ") for line in lines)


def test_a_slot_that_is_a_symlink_elsewhere_is_not_used(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path / "bc")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "bc").mkdir()
    (tmp_path / "bc" / APP).symlink_to(elsewhere)
    assert cache.acquire(APP, STACK) is None
    assert not any(elsewhere.iterdir())


def test_when_s3_cannot_confirm_the_tree_the_node_s_tagged_copy_is_used(
    tmp_path: Path, buildpacks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = Node(tmp_path, buildpacks)
    node.build("counter")
    original = FileTransfer.fetch_tagged

    def cache_get_fails(
        self: FileTransfer, url: str, dest: Path, if_none_match: str | None = None
    ) -> object:
        if "/cache/" in url:
            raise OSError("S3 is restarting")
        return original(self, url, dest, if_none_match)

    monkeypatch.setattr(FileTransfer, "fetch_tagged", cache_get_fails)
    lines, _ = node.build("reader")
    assert _said(lines, "could not be fetched") and _said(lines, "this node's copy")
    assert any(line.startswith("       cache says 1") for line in lines)
