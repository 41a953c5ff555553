"""selection.py: the buildpacks chosen, run from the copies a thread made meanwhile."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from slugbuilder.buildpack_support import sh, write_buildpack

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder.buildpacks import Buildpack
from nomadpaas.slugbuilder.models import BuildRequest
from nomadpaas.slugbuilder.selection import Prepare, select_buildpacks

ENV = {"PATH": "/usr/bin:/bin"}


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """A buildpacks dir: `python` never detects, `procfile` detects a Procfile."""
    root = tmp_path / "bps"
    write_buildpack(root, "python", {"detect": sh("exit 1"), "compile": sh("true")})
    write_buildpack(
        root, "procfile", {"detect": sh('[ -f "$1/Procfile" ] && echo Proc'), "compile": sh("")}
    )
    return root


def _select(
    tmp_path: Path, installed: Path, procfile: bool, config: dict[str, str] | None = None
) -> tuple[list[Buildpack], str, list[str]]:
    """Select for an app with or without a Procfile; (selected, description, log lines)."""
    app = tmp_path / "app"
    app.mkdir()
    if procfile:
        (app / "Procfile").write_text("web: run\n")
    request = BuildRequest(app, tmp_path, tmp_path / "cache", tmp_path / "out", config, installed)
    copies = tmp_path / "copies"
    preparing = Prepare(str(installed), str(copies), str(tmp_path / "out"), str(tmp_path / "env"))
    lines: list[str] = []
    try:
        selected, description = select_buildpacks(
            str(app), request, str(copies), ENV, lines.append, preparing
        )
    finally:
        preparing.wait()
    return selected, description, lines


def test_detection_picks_the_first_that_detects_and_returns_its_copy(
    tmp_path: Path, installed: Path
) -> None:
    selected, description, lines = _select(tmp_path, installed, procfile=True)
    copy = tmp_path / "copies" / "procfile"
    assert selected == [Buildpack("procfile", copy)] and description == "Proc"
    assert lines == ["-----> Proc app detected"]
    assert (copy / "bin" / "detect").read_text() == (installed / "procfile/bin/detect").read_text()
    assert (tmp_path / "out").is_dir()
    assert stat.S_IMODE((tmp_path / "env").stat().st_mode) == 0o700


def test_an_explicit_choice_skips_detection_but_describes_the_last(
    tmp_path: Path, installed: Path
) -> None:
    config = {"BUILDPACK_URL": "heroku/python"}
    selected, description, lines = _select(tmp_path, installed, procfile=True, config=config)
    assert selected == [Buildpack("python", tmp_path / "copies" / "python")]
    assert description == "python"  # its detect fails: the name stands in
    assert lines == ["-----> Using buildpack(s) from BUILDPACK_URL: python"]


def test_nothing_detected_fails_with_a_hint(tmp_path: Path, installed: Path) -> None:
    with pytest.raises(BuildFailed, match="No buildpack detected this app") as info:
        _select(tmp_path, installed, procfile=False)
    assert info.value.hint and "BUILDPACK_URL" in info.value.hint


def test_join_raises_what_the_preparation_raised_and_wait_does_not(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()  # ENV_DIR must be new: mkdir fails
    preparing = Prepare(str(tmp_path), str(tmp_path / "copies"), str(tmp_path / "out"),
                        str(tmp_path / "env"))  # fmt: skip
    preparing.wait()
    with pytest.raises(FileExistsError):
        preparing.join()
    preparing.join()  # raised once, handed over
