"""source.py: the app source staged into the build dir, and its source date."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder.source import newest_mtime_ns, stage_source


def test_a_source_dir_is_copied_without_git_and_with_its_symlinks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / ".git").mkdir(parents=True)
    (src / ".git" / "HEAD").write_text("ref")
    (src / "app.py").write_text("print(1)")
    (src / "link").symlink_to("app.py")
    stage_source(str(src), str(tmp_path / "app"))
    assert sorted(os.listdir(tmp_path / "app")) == ["app.py", "link"]
    assert os.readlink(tmp_path / "app" / "link") == "app.py"


def test_a_source_tarball_is_extracted_and_a_bad_one_refused(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: run\n")
    good = tmp_path / "good.tar.gz"
    with tarfile.open(good, "w:gz") as tar:
        tar.add(tmp_path / "Procfile", arcname="Procfile")
    stage_source(str(good), str(tmp_path / "app"))
    assert (tmp_path / "app" / "Procfile").read_text() == "web: run\n"
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        tar.add(tmp_path / "Procfile", arcname="../escape")
    with pytest.raises(BuildFailed, match="The source tarball was refused"):
        stage_source(str(bad), str(tmp_path / "app2"))


def test_a_missing_source_fails_the_build(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="does not exist"):
        stage_source(str(tmp_path / "nope"), str(tmp_path / "app"))


def test_the_source_date_is_the_newest_file_mtime(tmp_path: Path) -> None:
    assert newest_mtime_ns(str(tmp_path)) == 0
    (tmp_path / "sub").mkdir()
    for name, mtime_ns in (("a", 5_000_000_000), ("sub/b", 7_000_000_000)):
        (tmp_path / name).write_text(name)
        os.utime(tmp_path / name, ns=(mtime_ns, mtime_ns))
    os.utime(tmp_path / "sub", ns=(9_000_000_000, 9_000_000_000))  # dirs do not count
    assert newest_mtime_ns(str(tmp_path)) == 7_000_000_000
