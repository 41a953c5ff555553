"""allocdir: layout and permissions, idempotent build, destroy that never follows symlinks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nomadpaas.agent.client.allocdir import AllocDir, AllocDirError

ALLOC_ID = "0f6c9b3e-1111-2222-3333-444455556666"


def _mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_build_creates_nomad_layout_with_private_secrets(tmp_path: Path) -> None:
    alloc = AllocDir(str(tmp_path), ALLOC_ID)
    dirs = alloc.build(["web", "worker"])
    root = tmp_path / "alloc" / ALLOC_ID
    assert alloc.root == str(root)
    for sub in ("alloc/logs", "alloc/tmp", "alloc/data"):
        assert (root / sub).is_dir()
    for task in ("web", "worker"):
        for sub in ("local", "secrets", "tmp", "private"):
            assert (root / task / sub).is_dir()
        assert _mode(str(root / task / "secrets")) == 0o700
        assert _mode(str(root / task / "private")) == 0o700
    web = dirs["web"]
    assert web.dir == str(root / "web")
    assert web.local_dir == str(root / "web" / "local")
    assert web.log_dir == str(root / "alloc" / "logs")
    assert web.stdout_fifo == str(root / "alloc" / "logs" / ".web.stdout.fifo")
    assert web.stderr_fifo == str(root / "alloc" / "logs" / ".web.stderr.fifo")


def test_build_makes_a_missing_data_dir_and_serves_every_allocation(tmp_path: Path) -> None:
    data = tmp_path / "not" / "yet"
    first = AllocDir(str(data), ALLOC_ID)
    first.build(["web"])
    second = AllocDir(str(data) + "/./", "second")  # same data dir, spelt differently
    second.build(["web"])
    assert second.root == str(data / "alloc" / "second")
    assert (data / "alloc" / ALLOC_ID / "web" / "local").is_dir()
    assert (data / "alloc" / "second" / "web" / "local").is_dir()
    assert _mode(str(data / "alloc" / "second" / "web" / "tmp")) == 0o1777


def test_relative_data_dir_gives_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    alloc = AllocDir("data", ALLOC_ID)
    assert alloc.root == str(tmp_path / "data" / "alloc" / ALLOC_ID)
    assert alloc.task_dir("web").local_dir == str(
        tmp_path / "data" / "alloc" / ALLOC_ID / "web" / "local"
    )


def test_build_is_idempotent_and_keeps_contents(tmp_path: Path) -> None:
    alloc = AllocDir(str(tmp_path), ALLOC_ID)
    alloc.build(["web"])
    keep = Path(alloc.task_dir("web").local_dir) / "app.txt"
    keep.write_text("x")
    alloc.build(["web"])
    assert keep.read_text() == "x"


def test_destroy_removes_tree_but_not_symlink_targets(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    precious = outside / "precious.txt"
    precious.write_text("keep me")
    alloc = AllocDir(str(tmp_path / "data"), ALLOC_ID)
    alloc.build(["web"])
    local = Path(alloc.task_dir("web").local_dir)
    (local / "escape").symlink_to(outside)
    (local / "file-link").symlink_to(precious)
    alloc.destroy()
    assert not Path(alloc.root).exists()
    assert precious.read_text() == "keep me"
    alloc.destroy()  # already gone: no error


def test_destroy_of_a_root_that_is_a_symlink_only_unlinks_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    alloc = AllocDir(str(tmp_path / "data"), ALLOC_ID)
    os.makedirs(alloc.alloc_root)
    os.symlink(outside, alloc.root)
    alloc.destroy()
    assert not os.path.lexists(alloc.root)
    assert (outside / "sub").is_dir()


def test_build_refuses_symlinked_task_dir(tmp_path: Path) -> None:
    alloc = AllocDir(str(tmp_path / "data"), ALLOC_ID)
    alloc.build([])
    os.symlink(tmp_path, os.path.join(alloc.root, "web"))
    with pytest.raises(AllocDirError, match="is a symlink"):
        alloc.build(["web"])


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "x\x00"])
def test_names_that_could_escape_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(AllocDirError):
        AllocDir(str(tmp_path), bad)
    with pytest.raises(AllocDirError):
        AllocDir(str(tmp_path), ALLOC_ID).task_dir(bad)
