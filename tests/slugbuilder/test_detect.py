"""Every buildpack's bin/detect against every example app, and the selection rules."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from slugbuilder.buildpack_support import sh, write_buildpack

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder import buildpacks
from nomadpaas.slugbuilder.buildpacks import (
    DETECTION_ORDER,
    Buildpack,
    detect,
    detect_first,
    explicit_selection,
    resolve,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BUILDPACKS = REPO / "buildpacks"

# example -> {buildpack: what detect prints}; buildpacks not listed must not detect.
MATRIX: dict[str, dict[str, str]] = {
    "flask": {"python": "Python", "procfile": "Procfile"},
    "fastapi": {"python": "Python", "procfile": "Procfile"},
    "express": {"nodejs": "Node.js"},
    "python-function": {"function": "Python function"},
    "node-function": {"function": "Node.js function", "nodejs": "Node.js"},
    "static-site": {"static": "Static"},
    "shell-worker": {"procfile": "Procfile"},
    "fail-bad-requirements": {"python": "Python", "procfile": "Procfile"},
    "fail-bad-procfile": {"static": "Static", "procfile": "Procfile"},
    "fail-no-web": {"python": "Python"},
    "fail-crash-on-boot": {"procfile": "Procfile"},
}
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def test_every_example_is_in_the_matrix() -> None:
    assert {p.name for p in EXAMPLES.iterdir() if p.is_dir()} == set(MATRIX)


@pytest.mark.parametrize("example", sorted(MATRIX))
@pytest.mark.parametrize("name", DETECTION_ORDER)
def test_detect(example: str, name: str) -> None:
    found = detect(Buildpack(name, BUILDPACKS / name), EXAMPLES / example, ENV)
    assert found == MATRIX[example].get(name)


def test_function_with_a_web_process_is_a_plain_app(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("def main(request):\n    return 'x'\n")
    fn = Buildpack("function", BUILDPACKS / "function")
    assert detect(fn, tmp_path, ENV) == "Python function"
    (tmp_path / "Procfile").write_text("web: python main.py\n")
    assert detect(fn, tmp_path, ENV) is None


@pytest.mark.parametrize(
    "spec",
    [
        "python",
        "buildpacks/python",
        "heroku/python",
        "https://github.com/heroku/heroku-buildpack-python",
        "https://github.com/heroku/heroku-buildpack-python.git#v351",
    ],
)
def test_resolve_names_and_urls(spec: str) -> None:
    assert resolve(spec, BUILDPACKS) == Buildpack("python", BUILDPACKS / "python")


@pytest.mark.parametrize("spec", ["ruby", "https://example.com/x.tgz", "..", ""])
def test_resolve_refuses_unknown(spec: str) -> None:
    with pytest.raises(BuildFailed, match="Unknown buildpack") as info:
        resolve(spec, BUILDPACKS)
    assert "python" in info.value.message  # lists what is available


def test_explicit_selection_precedence(tmp_path: Path) -> None:
    assert explicit_selection(tmp_path, {}, BUILDPACKS) is None
    (tmp_path / "app.json").write_text(json.dumps({"buildpacks": [{"url": "heroku/nodejs"}]}))
    assert _names(explicit_selection(tmp_path, {}, BUILDPACKS)) == (["nodejs"], "app.json")
    (tmp_path / ".buildpacks").write_text(
        "# comment\nnodejs\n\nhttps://x/heroku-buildpack-python\n"
    )
    assert _names(explicit_selection(tmp_path, {}, BUILDPACKS)) == (
        ["nodejs", "python"],
        ".buildpacks",
    )
    env = {"BUILDPACK_URL": "static"}
    assert _names(explicit_selection(tmp_path, env, BUILDPACKS)) == (["static"], "BUILDPACK_URL")


def _names(selection: tuple[list[Buildpack], str] | None) -> tuple[list[str], str]:
    assert selection is not None
    return [b.name for b in selection[0]], selection[1]


def fake_buildpack(root: Path, name: str, script: str) -> Buildpack:
    """A buildpack whose bin/detect runs `script`."""
    return write_buildpack(root, name, {"detect": sh(script)})


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """An empty app dir for detects that do not look at the app."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    return app_dir


def test_detect_first_runs_detects_at_once_but_answers_in_order(tmp_path: Path, app: Path) -> None:
    slow_pass = fake_buildpack(tmp_path, "slow", "sleep 0.5; echo Slow")
    fast_pass = fake_buildpack(tmp_path, "fast", "echo Fast")
    hang = fake_buildpack(tmp_path, "hang", "echo Hang; exec sleep 60")
    failing = fake_buildpack(tmp_path, "fails", "echo nope; exit 1")

    assert detect_first([failing, slow_pass, fast_pass], app, ENV) == (slow_pass, "Slow")
    assert detect_first([failing, fast_pass, slow_pass], app, ENV) == (fast_pass, "Fast")
    assert detect_first([failing], app, ENV) is None
    # Concurrent: two slow detects cost one wait, and one that is still running once an
    # earlier one won is killed rather than waited for.
    other_slow = fake_buildpack(tmp_path, "slow2", "sleep 0.5; exit 1")
    started = time.monotonic()
    assert detect_first([other_slow, slow_pass, hang], app, ENV) == (slow_pass, "Slow")
    assert time.monotonic() - started < 5.0


def test_detect_first_runs_meanwhile_once_while_the_detects_run(tmp_path: Path, app: Path) -> None:
    flag = tmp_path / "flag"
    # The detect waits for a file that only `meanwhile` creates: it must run in between.
    waits = fake_buildpack(
        tmp_path,
        "waits",
        f"for i in $(seq 100); do [ -f {flag} ] && echo Saw && exit 0; sleep 0.1; done; exit 1",
    )
    calls: list[str] = []

    def meanwhile() -> None:
        calls.append("meanwhile")
        flag.touch()

    assert detect_first([waits], app, ENV, meanwhile=meanwhile) == (waits, "Saw")
    assert calls == ["meanwhile"]
    calls.clear()
    assert detect_first([], app, ENV, meanwhile=meanwhile) is None
    assert calls == ["meanwhile"]


@pytest.mark.parametrize("example", sorted(MATRIX))
def test_detect_first_picks_what_the_order_says(example: str) -> None:
    candidates = [Buildpack(name=n, path=BUILDPACKS / n) for n in DETECTION_ORDER]
    found = detect_first(candidates, EXAMPLES / example, ENV)
    expected = next(n for n in DETECTION_ORDER if n in MATRIX[example])
    assert found is not None and found[0].name == expected
    assert found[1] == MATRIX[example][expected]


def test_detects_after_the_winner_are_not_started_when_answers_come_quickly(
    tmp_path: Path, app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each start is an exec that blocks the task for 1-3 ms: a detect that could only
    # lose to an earlier answer is not started. (No speculation within this test.)
    monkeypatch.setattr(buildpacks, "SPECULATE_AFTER_S", 60.0)
    marker = tmp_path / "started"
    fails = fake_buildpack(tmp_path, "fails", "exit 1")
    passes = fake_buildpack(tmp_path, "passes", "echo Passes")
    later = fake_buildpack(tmp_path, "later", f"touch {marker}; echo Later")
    assert detect_first([fails, passes, later], app, ENV) == (passes, "Passes")
    assert not marker.exists()


def test_a_slow_detect_does_not_hold_up_the_next(tmp_path: Path, app: Path) -> None:
    # The first one answers only once the second has run: the second must be started
    # while the first is still running (else the first gives up after 10 s).
    marker = tmp_path / "second-ran"
    waits = fake_buildpack(
        tmp_path,
        "waits",
        f"for i in $(seq 100); do [ -f {marker} ] && exit 1; sleep 0.1; done; echo Waited",
    )
    second = fake_buildpack(tmp_path, "second", f"touch {marker}; echo Second")
    started = time.monotonic()
    assert detect_first([waits, second], app, ENV) == (second, "Second")
    assert time.monotonic() - started < 8.0


def _run_direct_and_sourced(
    bp: Buildpack, tmp_path: Path
) -> tuple[tuple[int, list[str]], tuple[int, list[str]]]:
    """bin/compile's (exit code, output) run directly (no exports) and through the
    sourcing bash (an empty export file)."""
    empty_export = tmp_path / "export"
    empty_export.write_text("")
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(tmp_path)}
    direct = buildpacks.run_phase(bp, "compile", [], env=env, exports=[], log=None, timeout_s=60)
    sourced = buildpacks.run_phase(
        bp, "compile", [], env=env, exports=[str(empty_export)], log=None, timeout_s=60
    )
    return direct, sourced


def test_a_phase_without_exports_sees_what_the_sourcing_bash_would_give_it(
    tmp_path: Path,
) -> None:
    # Without exports to source the phase is exec'd directly (no bash in between): its
    # environment must be the one that bash gave it (PWD, SHLVL after its exec).
    bp = write_buildpack(tmp_path, "envdump", {"compile": sh("env | LC_ALL=C sort")})
    direct, sourced = _run_direct_and_sourced(bp, tmp_path)
    assert direct == sourced
    assert direct[0] == 0 and any(line.startswith("SHLVL=") for line in direct[1])


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("echo no shebang: bash runs me\n", 0o755),  # ENOEXEC for a direct exec
        ("#!/bin/sh\necho not executable\n", 0o644),  # EACCES
    ],
)
def test_a_phase_that_cannot_be_exec_d_directly_fails_or_runs_as_before(
    tmp_path: Path, text: str, mode: int
) -> None:
    bp = write_buildpack(tmp_path, "odd", {"compile": text}, mode)
    direct, sourced = _run_direct_and_sourced(bp, tmp_path)
    assert direct == sourced
