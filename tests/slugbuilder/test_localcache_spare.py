"""The node cache slot's spare: a hard-link clone of the tree, made by the build task
after the tree was recorded, taken by the next build's buildpacks by rename, and never
trusted after a build that failed, was killed, or refilled the tree (localcache.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from slugbuilder.buildpack_support import RELEASE_UNLESS_FAIL, bash, write_buildpack
from slugbuilder.localcache_support import APP, STACK, Node

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder.localcache import CacheSlot, LocalCache, Tag

TAG = Tag("http://s3/b/cache/web/x.tar.gz", '"e1"', 10)


def _slot(root: Path) -> CacheSlot:
    slot = LocalCache(root).acquire(APP, STACK)
    assert slot is not None
    return slot


def _names(slot: CacheSlot) -> list[str]:
    return sorted(os.listdir(slot.dir))


def test_a_spare_has_the_tree_s_files_in_directories_of_its_own(tmp_path: Path) -> None:
    slot = _slot(tmp_path / "bc")
    tree = Path(slot.reset_tree())
    venv = tree / "python" / "slug" / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "flask").write_text("#!/bin/sh\n")
    (venv / "bin" / "python").symlink_to("/usr/bin/python3")
    (venv / "lib64").symlink_to("lib")  # dangling, relative
    (venv / "ro").mkdir(mode=0o555)
    (tree / "python" / "key").write_text("k")
    (tree / "python" / "uv-tool" / "bin").mkdir(parents=True)  # not for the app: not cloned
    (tree / "node" / "npm-cache" / "_cacache").mkdir(parents=True)  # no slug/: not cloned
    (tree / ".nomadpaas" / "slug-layers").mkdir(parents=True)
    (tree / "top-file").write_text("x")
    slot.record(TAG)
    assert slot.make_spare()

    spare = Path(slot.spare)
    assert spare == Path(slot.tree + ".spare")  # where buildpacks look: "$CACHE_DIR.spare"
    assert sorted(p.name for p in spare.iterdir()) == ["python"]
    assert sorted(p.name for p in (spare / "python").iterdir()) == ["key", "slug"]
    assert (spare / "python" / "key").stat().st_ino == (tree / "python" / "key").stat().st_ino
    seen = set()
    for path in (tree / "python" / "slug").rglob("*"):
        twin = spare / "python" / "slug" / path.relative_to(tree / "python" / "slug")
        st, twin_st = path.lstat(), twin.lstat()
        seen.add(str(twin.relative_to(spare)))
        assert twin_st.st_mode == st.st_mode, path
        if path.is_dir() and not path.is_symlink():
            assert twin_st.st_ino != st.st_ino, path  # its own: a build may take it
        else:
            assert twin_st.st_ino == st.st_ino, path  # the same file: costs no data
    assert {str(p.relative_to(spare)) for p in (spare / "python" / "slug").rglob("*")} == seen
    assert os.readlink(spare / "python" / "slug" / ".venv" / "bin" / "python") == "/usr/bin/python3"
    assert _names(slot) == ["lock", "tag", "tree", "tree.spare"]
    slot.release()


def test_spares_out_of_use_and_half_made_ones_are_removed(tmp_path: Path) -> None:
    slot = _slot(tmp_path / "bc")
    (Path(slot.reset_tree()) / "f").write_text("x")
    slot.record(TAG)
    assert slot.make_spare()
    slot.drop_spare()  # one rename, out of the buildpacks' sight
    assert not os.path.exists(slot.spare)
    assert [n for n in _names(slot) if n.startswith("trash.")]
    (Path(slot.dir) / "spare.new" / "d").mkdir(parents=True)  # a build killed while cloning
    assert slot.make_spare()
    assert _names(slot) == ["lock", "tag", "tree", "tree.spare"]
    assert slot.make_spare()  # the old spare goes
    assert _names(slot) == ["lock", "tag", "tree", "tree.spare"]
    slot.reset_tree()  # the tree is refilled: its spare is not its clone any more
    assert not os.path.exists(slot.spare)
    slot.release()


def test_prune_removes_a_slot_with_its_spares(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path / "bc", max_slots=0)
    slot = _slot(tmp_path / "bc")
    (Path(slot.reset_tree()) / "f").write_text("x")
    slot.record(TAG)
    assert slot.make_spare()
    slot.drop_spare()
    assert slot.make_spare()
    (Path(slot.dir) / "spare.new").mkdir()
    slot.release()
    assert cache.prune() == [slot.dir]
    assert not (tmp_path / "bc" / APP).exists()


# -- the build task ------------------------------------------------------------------------


@pytest.fixture
def buildpacks(tmp_path: Path) -> Path:
    """`taker` keeps CACHE_DIR/taker/{key,slug/part} from its cold build (and writes a new
    CACHE_DIR/bumped when the app has a file BUMP), says what it finds in the spare,
    taking its `part` by rename; fails in bin/release when the app has a file FAIL."""
    compile_body = (
        'c="$2/taker"\n'
        '[ -f "$c/key" ] || { mkdir -p "$c/slug/part"; echo 1 > "$c/key"; }\n'
        '[ ! -f "$1/BUMP" ] || echo "$1" > "$2/bumped"\n'
        'spare="$2.spare/taker"\n'
        'if [ -d "$spare/slug/part" ]; then echo "       spare of key=$(cat "$spare/key")"; '
        'mv "$spare/slug/part" "$1/part"; else echo "       no spare"; fi'
    )
    write_buildpack(
        tmp_path / "bps",
        "taker",
        {"detect": bash("echo taker"), "compile": bash(compile_body),
         "release": RELEASE_UNLESS_FAIL},
    )  # fmt: skip
    return tmp_path / "bps"


def _build(node: Node, *, fail: bool = False, bump: bool = False) -> list[str]:
    """A build with the `taker` buildpack: its log lines."""
    return node.build("taker", fail=fail, bump=bump)[0]


def _spare_line(lines: list[str]) -> str:
    return next(line.strip() for line in lines if "spare" in line)


def test_each_build_leaves_a_whole_spare_for_the_next(tmp_path: Path, buildpacks: Path) -> None:
    node = Node(tmp_path, buildpacks)
    assert _spare_line(_build(node)) == "no spare"
    part = node.slot_dir / "tree.spare" / "taker" / "slug" / "part"
    assert part.is_dir()
    made = part.stat().st_ino
    assert _spare_line(_build(node)) == "spare of key=1"
    assert (tmp_path / "work-node-2" / "build" / "app" / "part").stat().st_ino == made
    # What the build took was made again, for the build after it.
    assert part.is_dir() and part.stat().st_ino != made
    assert not [n for n in os.listdir(node.slot_dir) if n.startswith(("trash.", "spare.new"))]
    assert _spare_line(_build(node)) == "spare of key=1"


def test_a_failed_build_leaves_no_spare(tmp_path: Path, buildpacks: Path) -> None:
    node = Node(tmp_path, buildpacks)
    _build(node)
    with pytest.raises(BuildFailed, match="bin/release"):
        _build(node, fail=True)  # took the spare's part, then failed
    assert not (node.slot_dir / "tree.spare").exists()
    # The tree itself was untouched, so it is still trusted; the spare comes back after.
    assert (node.slot_dir / "tag").is_file()
    assert _spare_line(_build(node)) == "no spare"
    assert _spare_line(_build(node)) == "spare of key=1"


def test_a_killed_build_s_spare_is_never_used(tmp_path: Path, buildpacks: Path) -> None:
    node = Node(tmp_path, buildpacks)
    _build(node)
    # A build that took the tag (the tree in use) and was killed: the lock dies with it.
    killed = node.cache.acquire(APP, STACK)
    assert killed is not None and killed.take() is not None
    killed.release()
    assert (node.slot_dir / "tree.spare" / "taker" / "slug" / "part").is_dir()  # left...
    lines = _build(node)
    assert _spare_line(lines) == "no spare"  # ...and not trusted: the tree was refilled
    assert not any("this node's copy" in line for line in lines)
    assert _spare_line(_build(node)) == "spare of key=1"


def test_a_tree_refilled_from_s3_drops_its_spare(tmp_path: Path, buildpacks: Path) -> None:
    here, there = Node(tmp_path, buildpacks, "here"), Node(tmp_path, buildpacks, "there")
    _build(here)
    # Saves a new cache object: here's tree (and spare) are not S3's any more.
    _build(there, bump=True)
    lines = _build(here)
    assert _spare_line(lines) == "no spare"
    assert not any("this node's copy" in line for line in lines)
