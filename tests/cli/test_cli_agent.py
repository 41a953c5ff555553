"""The CLI end to end against the real agent: output, JSON, exit codes.

The issue's done-when line and the Nomad-down case run `python -m nomadpaas` as a
subprocess; the rest call `nomadpaas.cli.main()` in-process (same argv parsing, error
rendering and exit codes, without paying interpreter start-up per command).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from testsupport import ServerProcess, free_port, run_main


def run(
    home: Path, addr: str, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOMAD_TOKEN", "NOMADPAAS_APP", "NOMAD_NAMESPACE", "NOMADPAAS_DEBUG")
    }
    env.update({"NOMAD_ADDR": addr, "NOMADPAAS_HOME": str(home), **(extra_env or {})})
    return subprocess.run(
        [sys.executable, "-m", "nomadpaas", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


class InProcess:
    """Runs `nomadpaas.cli.main()` with argv and environment set like a shell would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self.monkeypatch = monkeypatch
        self.capsys = capsys

    def __call__(
        self, home: Path, addr: str, *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        for name in ("NOMAD_TOKEN", "NOMADPAAS_APP", "NOMAD_NAMESPACE", "NOMADPAAS_DEBUG"):
            self.monkeypatch.delenv(name, raising=False)
        env = {"NOMAD_ADDR": addr, "NOMADPAAS_HOME": str(home), **(extra_env or {})}
        for name, value in env.items():
            self.monkeypatch.setenv(name, value)
        try:
            return run_main(self.monkeypatch, self.capsys, args)
        finally:
            for name in env:
                self.monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    return InProcess(monkeypatch, capsys)


def test_done_when_line(agent: ServerProcess, home: Path) -> None:
    """The issue's done-when line, command by command:

    apps create demo && config set -a demo A=1 B==x && config -a demo --json && releases -a demo
    """
    created = run(home, agent.url, "apps", "create", "demo")
    assert created.returncode == 0, created.stderr
    assert "http://demo.localhost" in created.stdout
    setting = run(home, agent.url, "config", "set", "-a", "demo", "A=1", "B==x")
    assert setting.returncode == 0, setting.stderr
    assert "done, v1" in setting.stderr
    shown = run(home, agent.url, "config", "-a", "demo", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {"A": "1", "B": "=x"}
    releases = run(home, agent.url, "releases", "-a", "demo")
    assert releases.returncode == 0, releases.stderr
    assert "v1" in releases.stdout
    assert "Set A, B config vars" in releases.stdout


def test_from_file_unset_and_release_info(
    agent: ServerProcess, home: Path, cli: InProcess, tmp_path: Path
) -> None:
    assert cli(home, agent.url, "apps", "create", "demo").returncode == 0
    env_file = tmp_path / ".env"
    env_file.write_text('export GREETING="hello\\nworld"\nPORT=5000 # web\n')
    result = cli(home, agent.url, "config", "set", "-a", "demo", "--from-file", str(env_file))
    assert result.returncode == 0, result.stderr
    unset = cli(home, agent.url, "config", "unset", "-a", "demo", "PORT")
    assert "done, v2" in unset.stderr
    listing = json.loads(cli(home, agent.url, "releases", "list", "-a", "demo", "--json").stdout)
    assert [(r["name"], r["description"]) for r in listing] == [
        ("v2", "Unset PORT config var"),
        ("v1", "Set GREETING, PORT config vars"),
    ]
    v1 = json.loads(cli(home, agent.url, "releases", "info", "v1", "-a", "demo", "--json").stdout)
    assert v1["config"] == {"GREETING": "hello\nworld", "PORT": "5000"}
    got = cli(home, agent.url, "config", "get", "GREETING", "-a", "demo")
    assert got.stdout == "hello\nworld\n"


def test_duplicate_app_exits_1(agent: ServerProcess, home: Path, cli: InProcess) -> None:
    assert cli(home, agent.url, "apps", "create", "demo").returncode == 0
    again = cli(home, agent.url, "apps", "create", "demo")
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr


def test_invalid_name_exits_2_and_writes_nothing(
    agent: ServerProcess, home: Path, cli: InProcess
) -> None:
    bad = cli(home, agent.url, "apps", "create", "Not_Valid")
    assert bad.returncode == 2
    assert "lowercase" in bad.stderr
    listed = cli(home, agent.url, "apps", "--json")
    assert json.loads(listed.stdout) == []


def test_missing_app_exits_1_with_hint(agent: ServerProcess, home: Path, cli: InProcess) -> None:
    missing = cli(home, agent.url, "config", "-a", "ghost")
    assert missing.returncode == 1
    assert "nomadpaas apps create ghost" in missing.stderr


def test_no_app_flag_exits_2(agent: ServerProcess, home: Path, cli: InProcess) -> None:
    result = cli(home, agent.url, "releases")
    assert result.returncode == 2
    assert "NOMADPAAS_APP" in result.stderr
    by_env = cli(home, agent.url, "apps", "info", "--json", extra_env={"NOMADPAAS_APP": "ghost"})
    assert by_env.returncode == 1
    assert json.loads(by_env.stdout)["error"] == "NotFound"


def test_nomad_down_exits_6_naming_the_address(home: Path) -> None:
    addr = f"http://127.0.0.1:{free_port()}"
    result = run(home, addr, "apps", "list")
    assert result.returncode == 6
    assert addr in result.stderr
    assert "nomadpaas up" in result.stderr
    assert "Traceback" not in result.stderr
    as_json = run(home, addr, "config", "-a", "demo", "--json")
    assert as_json.returncode == 6
    assert json.loads(as_json.stdout)["error"] == "NomadUnreachable"
