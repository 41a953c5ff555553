"""processes.py: the Procfile read before and after compile, merged with the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomadpaas.errors import BuildFailed
from nomadpaas.procfile import Procfile
from nomadpaas.slugbuilder.buildpacks import Buildpack
from nomadpaas.slugbuilder.processes import merge_process_types, read_procfile
from nomadpaas.slugbuilder.release import ReleaseInfo

LAST = Buildpack("last", "/nowhere/last")


def _merge(
    procfile: Procfile | None, defaults: dict[str, str]
) -> tuple[dict[str, str], list[str], list[str]]:
    lines: list[str] = []
    warnings: list[str] = []
    merged = merge_process_types(procfile, ReleaseInfo(defaults), LAST, lines.append, warnings)
    return merged, lines, warnings


def test_procfile_entries_win_and_defaults_fill_in_the_other_types() -> None:
    procfile = Procfile({"web": "gunicorn app:app", "worker": "celery"})
    merged, lines, warnings = _merge(procfile, {"web": "python app.py", "clock": "clock"})
    assert merged == {"web": "gunicorn app:app", "worker": "celery", "clock": "clock"}
    assert lines == [
        "-----> Discovering process types",
        "       Procfile declares types     -> web, worker",
        "       Default types for buildpack -> clock",
    ]
    assert warnings == []


def test_no_process_type_at_all_fails_with_a_hint() -> None:
    with pytest.raises(BuildFailed, match="no Procfile and the last buildpack") as info:
        _merge(None, {})
    assert info.value.hint and "web:" in info.value.hint


@pytest.mark.parametrize("defaults", [{"web": "  "}, {"web": "a\nb"}, {"we:b": "x"}])
def test_an_invalid_default_type_fails_the_build(defaults: dict[str, str]) -> None:
    with pytest.raises(BuildFailed, match="from the buildpack is invalid"):
        _merge(None, defaults)


def test_no_web_and_a_default_that_is_no_dns_label_are_warnings() -> None:
    merged, lines, warnings = _merge(None, {"Worker_1": "run"})
    assert merged == {"Worker_1": "run"}
    assert warnings == [
        "process type 'Worker_1' is not a lowercase DNS label",
        "no web process: this app gets no HTTP traffic",
    ]
    assert lines[-2:] == [f" !     Warning: {w}" for w in warnings]


def test_read_procfile_shows_its_warnings_only_when_asked(tmp_path: Path) -> None:
    assert read_procfile(str(tmp_path), None, []) is None
    (tmp_path / "Procfile").write_text("web: a\nWeb_2: b\n")
    lines: list[str] = []
    warnings: list[str] = []
    procfile = read_procfile(str(tmp_path), lines.append, warnings)
    assert procfile is not None and procfile.processes == {"web": "a", "Web_2": "b"}
    assert len(warnings) == 1 and warnings[0].startswith("Procfile line 2:")
    assert lines == [f" !     Warning: {warnings[0]}"]
    quiet: list[str] = []
    assert read_procfile(str(tmp_path), None, quiet) == procfile and quiet == []


def test_a_broken_procfile_fails_the_build_with_the_parser_s_hint(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("not a process line\n")
    with pytest.raises(BuildFailed, match="Procfile is invalid: line 1") as info:
        read_procfile(str(tmp_path), None, [])
    assert info.value.hint and "name: command" in info.value.hint
