"""phases.py: bin/compile of each buildpack in turn, bin/release, release config vars."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from slugbuilder.buildpack_support import sh, write_buildpack

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder.buildpacks import Buildpack
from nomadpaas.slugbuilder.models import CompileFailed
from nomadpaas.slugbuilder.phases import LOG_TAIL_LINES, compile_all, run_release, write_config_vars
from nomadpaas.slugbuilder.release import ReleaseInfo
from nomadpaas.slugbuilder.timings import Timings

ENV = {"PATH": "/usr/bin:/bin"}


def _compile(
    tmp_path: Path, selected: list[Buildpack], lines: list[str], timer: Timings
) -> list[str]:
    dirs = [tmp_path / d for d in ("app", "cache", "env")]
    for d in dirs:
        d.mkdir(exist_ok=True)
    build_dir, cache_dir, env_dir = (str(d) for d in dirs)
    return compile_all(
        selected, build_dir, cache_dir, env_dir,
        env=ENV, emit=lines.append, timer=timer, timeout_s=60,
    )  # fmt: skip


def test_each_compile_gets_the_dirs_and_sources_the_exports_before_it(tmp_path: Path) -> None:
    first = write_buildpack(
        tmp_path,
        "first",
        {"compile": sh('echo "args $# $(basename $1) $(basename $2) $(basename $3)"\n'
                       'echo "export FROM_FIRST=yes" > "$(dirname "$0")/../export"')},
    )  # fmt: skip
    quiet = write_buildpack(tmp_path, "quiet", {"compile": sh("true")})
    last = write_buildpack(tmp_path, "last", {"compile": sh('echo "last sees $FROM_FIRST"')})
    lines: list[str] = []
    timer = Timings()
    exports = _compile(tmp_path, [first, quiet, last], lines, timer)
    assert lines == ["args 3 app cache env", "last sees yes"]
    assert exports == [first.export_file]
    assert list(timer.to_dict()) == ["compile"]


def test_a_failing_compile_names_the_buildpack_and_keeps_the_last_lines(tmp_path: Path) -> None:
    noisy = write_buildpack(
        tmp_path,
        "noisy",
        {"compile": sh('for i in $(seq 40); do echo "line $i"; echo; done; exit 3')},
    )
    never = write_buildpack(tmp_path, "never", {"compile": sh("echo ran")})
    lines: list[str] = []
    with pytest.raises(CompileFailed) as info:
        _compile(tmp_path, [noisy, never], lines, Timings())
    assert info.value.message == "The noisy buildpack failed to compile the app (exit code 3)"
    assert info.value.log_tail == [f"line {i}" for i in range(41 - LOG_TAIL_LINES, 41)]
    assert "ran" not in lines


def test_release_without_bin_release_declares_nothing(tmp_path: Path) -> None:
    bp = write_buildpack(tmp_path, "bare", {"compile": sh("true")})
    assert run_release(bp, str(tmp_path), ENV, []) == ReleaseInfo()


def test_release_reads_what_bin_release_prints_with_the_exports(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.write_text("export WEB_CMD=serve\n")
    bp = write_buildpack(
        tmp_path,
        "rel",
        {"release": sh('printf "default_process_types:\\n  web: %s\\n" "$WEB_CMD"')},
    )
    assert run_release(bp, str(tmp_path), ENV, [str(export)]) == ReleaseInfo({"web": "serve"})


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("exit 2", "bin/release of the bad buildpack exited with 2"),
        ("echo 'config_vars: {A: b}'", "bin/release of the bad buildpack printed unsupported"),
    ],
)
def test_a_failing_or_unreadable_release_fails_the_build(
    tmp_path: Path, script: str, message: str
) -> None:
    bp = write_buildpack(tmp_path, "bad", {"release": sh(script)})
    with pytest.raises(BuildFailed, match=message):
        run_release(bp, str(tmp_path), ENV, [])


def test_release_config_vars_are_defaults_the_user_s_vars_override(tmp_path: Path) -> None:
    write_config_vars(str(tmp_path), {})
    assert not (tmp_path / ".profile.d").exists()
    write_config_vars(str(tmp_path), {"QUOTED": "it's $HOME", "USER_SET": "x", "BAD-NAME": "y"})
    script = tmp_path / ".profile.d" / "000_config_vars.sh"
    assert "BAD-NAME" not in script.read_text()
    done = subprocess.run(
        ["sh", "-c", f'. "{script}"; printf "%s|%s" "$QUOTED" "$USER_SET"'],
        env={**ENV, "USER_SET": "mine"}, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert done.stdout == "it's $HOME|mine"
