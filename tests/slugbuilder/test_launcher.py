"""The slug's launcher, run for real against a hand-made app dir (no build needed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from nomadpaas.slugbuilder.launcher import write_launcher


@pytest.fixture
def app(tmp_path: Path) -> Path:
    app = tmp_path / "somewhere" / "app"
    (app / ".profile.d").mkdir(parents=True)
    (app / ".profile.d" / "b.sh").write_text(
        'export ORDER="${ORDER:-}b"\nexport FROM_PROFILE=yes\n'
    )
    (app / ".profile.d" / "a.sh").write_text('export ORDER="${ORDER:-}a"\n')
    (app / ".profile.d" / "ignored.txt").write_text("export ORDER=broken\n")
    (app / ".profile").write_text('export ORDER="${ORDER}p"\n')
    write_launcher(
        app,
        {
            "web": 'echo "port=$PORT home=$HOME pwd=$(pwd) dyno=$DYNO order=$ORDER'
            ' p=$FROM_PROFILE"',
            "worker": "echo ${GREETING:-hi} && exit 7",
        },
    )
    return app


def _start(app: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(app / ".nomadpaas" / "start"), *args],
        env={"PATH": os.environ["PATH"], **env},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_web_runs_in_the_app_dir_with_profile_sourced(app: Path) -> None:
    done = _start(app, "web", PORT="1234")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"port=1234 home={app} pwd={app} dyno=web.1 order=abp p=yes")


def test_exit_code_and_config_pass_through(app: Path) -> None:
    done = _start(app, "worker", GREETING="hello")
    assert (done.returncode, done.stdout.strip()) == (7, "hello")


def test_nomad_variables_fill_port_and_dyno(app: Path) -> None:
    done = _start(app, "web", NOMAD_PORT_web="5555", NOMAD_ALLOC_INDEX="2")
    assert "port=5555" in done.stdout and "dyno=web.3" in done.stdout


def test_unknown_process_type(app: Path) -> None:
    done = _start(app, "clock")
    assert done.returncode == 127
    assert "'clock' is not in this slug (it has: web worker)" in done.stderr


def test_one_off_shell_and_argv(app: Path) -> None:
    shell = _start(app, "-c", 'echo "$DYNO $ORDER" && pwd')
    assert shell.stdout.split() == ["run.1", "abp", str(app)]
    argv = _start(app, "--", "printf", "%s|", "a b", "$HOME")
    assert argv.stdout == "a b|$HOME|"  # argv is not re-split or expanded


@pytest.mark.parametrize("args", [[], ["-x"], ["web", "extra"], ["-c"], ["--"]])
def test_usage_errors(app: Path, args: list[str]) -> None:
    done = _start(app, *args)
    assert done.returncode == 2 and "usage" in done.stderr
