"""Source packing: gitignore rules (table-driven), determinism, size limit, symlinks."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import pytest

from nomadpaas.errors import InvalidInput
from nomadpaas.ignorerules import IgnoreRules, parse_ignore_lines
from nomadpaas.sourcepack import pack_source, scan_source

# (patterns, path, is_dir, ignored?)
RULES = [
    (["*.log"], "a.log", False, True),
    (["*.log"], "deep/er/a.log", False, True),
    (["*.log"], "a.log.txt", False, False),
    (["# a comment", ""], "# a comment", False, False),
    (["\\#hash"], "#hash", False, True),
    (["/build"], "build", True, True),
    (["/build"], "src/build", True, False),
    (["build/"], "build", False, False),  # trailing slash: directories only
    (["build/"], "src/build", True, True),
    (["doc/*.txt"], "doc/a.txt", False, True),
    (["doc/*.txt"], "doc/sub/a.txt", False, False),  # * does not cross /
    (["doc/*.txt"], "x/doc/a.txt", False, False),  # a middle slash anchors
    (["**/logs"], "logs", True, True),
    (["**/logs"], "a/b/logs", True, True),
    (["**/logs/*.log"], "a/logs/x.log", False, True),
    (["a/**/b"], "a/b", True, True),
    (["a/**/b"], "a/x/y/b", True, True),
    (["a/**/b"], "c/a/x/b", True, False),
    (["abc/**"], "abc/x/y", False, True),
    (["abc/**"], "abc", True, False),
    (["*.py[co]"], "m.pyc", False, True),
    (["*.py[co]"], "m.pyd", False, False),
    (["[!a]*.md"], "a.md", False, False),
    (["[!a]*.md"], "b.md", False, True),
    (["?.txt"], "ab.txt", False, False),
    (["?.txt"], "a.txt", False, True),
    (["*.log", "!keep.log"], "keep.log", False, False),
    (["*.log", "!keep.log"], "other.log", False, True),
    (["!keep.log", "*.log"], "keep.log", False, True),  # last match wins
    (["data/", "!data/"], "data", True, False),
    (["trailing   "], "trailing", False, True),
    (["\\!bang"], "!bang", False, True),
]


@pytest.mark.parametrize(("patterns", "path", "is_dir", "expected"), RULES)
def test_ignore_rules(patterns: list[str], path: str, is_dir: bool, expected: bool) -> None:
    rules = IgnoreRules(parse_ignore_lines(patterns))
    assert rules.ignored(path, is_dir) is expected


def test_nested_ignore_file_applies_below_its_directory_and_wins() -> None:
    rules = IgnoreRules(parse_ignore_lines(["*.tmp"]))
    rules.extend(parse_ignore_lines(["!keep.tmp", "/local"], base="sub"))
    assert rules.ignored("a.tmp", False)
    assert not rules.ignored("sub/keep.tmp", False)
    assert rules.ignored("keep.tmp", False)  # the negation is scoped to sub/
    assert rules.ignored("sub/local", False)
    assert not rules.ignored("local", False)
    assert not rules.ignored("sub/x/local", False)


def make_tree(root: Path) -> Path:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "mod.py").write_text("print('hi')\n")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "run.sh").chmod(0o755)
    (root / "Procfile").write_text("web: ./run.sh\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".gitignore").write_text("*.pyc\n.venv/\n.env\n")
    (root / ".slugignore").write_text("/media\n*.psd\n!keep.psd\n")
    (root / "media").mkdir()
    (root / "media" / "big.bin").write_bytes(b"x" * 1000)
    (root / "art.psd").write_bytes(b"psd")
    (root / "keep.psd").write_bytes(b"keep")
    (root / "src" / "pkg" / "mod.pyc").write_bytes(b"\0pyc")
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".env").write_text("SECRET=1\n")
    (root / "src" / ".gitignore").write_text("generated/\n")
    (root / "src" / "generated").mkdir()
    (root / "src" / "generated" / "x.py").write_text("")
    return root


def test_pack_includes_and_excludes_the_right_entries(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app")
    packed = pack_source(root, tmp_path / "out" / "src.tar.gz")
    with tarfile.open(packed.path) as tar:
        names = sorted(tar.getnames())
        modes = {m.name: m.mode for m in tar.getmembers()}
        owners = {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in tar.getmembers()}
    assert names == sorted(
        [".gitignore", ".slugignore", "Procfile", "keep.psd", "run.sh", "src",
         "src/.gitignore", "src/pkg", "src/pkg/mod.py"]
    )  # fmt: skip
    assert modes["run.sh"] == 0o755 and modes["Procfile"] == 0o644
    assert owners == {(0, 0, "", "", 0)}
    assert set(packed.ignored) >= {".git", ".env", ".venv", "media", "art.psd", "src/generated"}
    assert packed.sha256 == hashlib.sha256(packed.path.read_bytes()).hexdigest()
    assert packed.uncompressed_bytes == sum(
        (root / n).stat().st_size for n in names if (root / n).is_file()
    )


def test_gitignore_can_be_turned_off(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app")
    entries, ignored, _ = scan_source(root, use_gitignore=False)
    paths = {e.relpath for e in entries}
    assert ".env" in paths and "src/pkg/mod.pyc" in paths
    assert "media" in ignored and ".git" in ignored  # .slugignore and .git still apply


def test_same_tree_gives_same_sha256_whatever_the_mtimes_and_umask(tmp_path: Path) -> None:
    one = make_tree(tmp_path / "one")
    two = make_tree(tmp_path / "two")
    for path in two.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000), follow_symlinks=False)
    (two / "Procfile").chmod(0o600)  # same execute bits, different permissions
    a = pack_source(one, tmp_path / "a.tar.gz")
    b = pack_source(two, tmp_path / "b.tar.gz")
    assert a.sha256 == b.sha256
    (two / "Procfile").write_text("web: ./run.sh --changed\n")
    assert pack_source(two, tmp_path / "c.tar.gz").sha256 != a.sha256


def test_over_the_limit_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / "huge.bin").write_bytes(b"\0" * 3000)
    (root / "small.txt").write_text("x")
    dest = tmp_path / "out" / "src.tar.gz"
    with pytest.raises(InvalidInput) as info:
        pack_source(root, dest, max_bytes=2048)
    assert "huge.bin" in info.value.message and ".slugignore" in (info.value.hint or "")
    assert not dest.exists()
    (root / ".slugignore").write_text("huge.bin\n")
    assert pack_source(root, dest, max_bytes=2048).files == 2  # .slugignore + small.txt


def test_symlinks_are_kept_inside_and_skipped_when_leaving(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("do not pack me")
    root = tmp_path / "app"
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "real.txt").write_text("real")
    (root / "alias.txt").symlink_to("lib/real.txt")
    (root / "libdir").symlink_to("lib", target_is_directory=True)
    (root / "abs").symlink_to(outside)
    (root / "up").symlink_to("../secret.txt")
    (root / "outdir").symlink_to(tmp_path, target_is_directory=True)
    packed = pack_source(root, tmp_path / "src.tar.gz")
    with tarfile.open(packed.path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        data = b"".join(
            tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isreg()
        )
    assert members["alias.txt"].issym() and members["alias.txt"].linkname == "lib/real.txt"
    assert members["libdir"].issym()
    assert not {"abs", "up", "outdir"} & set(members)
    assert b"do not pack me" not in data
    assert len(packed.warnings) == 3 and all("leaving" in w for w in packed.warnings)


def test_not_a_directory_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        pack_source(tmp_path / "missing", tmp_path / "x.tar.gz")
