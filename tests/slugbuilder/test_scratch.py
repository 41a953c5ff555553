"""Temporary names for the build task without `tempfile`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nomadpaas.slugbuilder.scratch import mkdtemp, mkstemp, remove_tree, scratch_dir


def test_mkstemp_makes_a_new_private_file_each_time(tmp_path: Path) -> None:
    made = []
    for _ in range(20):
        fd, path = mkstemp(".x.", tmp_path)
        os.close(fd)
        made.append(path)
        assert os.path.basename(path).startswith(".x.")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(set(made)) == 20


def test_mkdtemp_makes_a_private_directory(tmp_path: Path) -> None:
    path = mkdtemp("build-", tmp_path)
    assert os.path.isabs(path) and os.path.dirname(path) == str(tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert mkdtemp("build-", tmp_path) != path


def test_scratch_dir_is_removed_even_with_read_only_directories_inside(tmp_path: Path) -> None:
    with scratch_dir("s-", str(tmp_path)) as scratch:
        locked = Path(scratch, "go", "pkg", "mod")
        locked.mkdir(parents=True)
        (locked / "f.go").write_text("package f")
        (locked / "f.go").chmod(0o444)
        for directory in (locked, locked.parent, locked.parent.parent):
            directory.chmod(0o555)  # as Go leaves its module cache
    assert list(tmp_path.iterdir()) == []


def test_remove_tree_of_nothing_is_fine(tmp_path: Path) -> None:
    remove_tree(str(tmp_path / "absent"))
    assert list(tmp_path.iterdir()) == []
