"""Fixtures for the embedded-stack tests: an isolated NOMADPAAS_HOME, stand-in servers."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nomadpaas.stack import load_record
from nomadpaas.stack.process import is_ours, pid_alive

STANDIN = str(Path(__file__).with_name("standin.py"))

ArgvFactory = Callable[[str, object, Path], list[str]]


def _standin_argv(name: str, ports: object, home: Path) -> list[str]:
    """Small http.server stand-ins with the real servers' readiness and token behaviour,
    for tests about process management rather than about the servers."""
    if name == "agent":
        port = ports.nomad  # type: ignore[attr-defined]
        return [sys.executable, STANDIN, "agent", str(port), str(home / "acl-token")]
    return [sys.executable, STANDIN, "s3", str(ports.s3)]  # type: ignore[attr-defined]


def kill_recorded(home: Path) -> None:
    """Kill (by PID, after checking identity) whatever the record under `home` lists."""
    record = load_record(home)
    for proc in (record.processes if record else {}).values():
        if is_ours(proc):
            os.kill(proc.pid, signal.SIGKILL)
            for _ in range(100):
                if not pid_alive(proc.pid):
                    break
                __import__("time").sleep(0.05)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A NOMADPAAS_HOME for one test; whatever was started there is killed afterwards."""
    path = tmp_path / "home"
    try:
        yield path
    finally:
        kill_recorded(path)


@pytest.fixture
def standin_argv() -> ArgvFactory:
    """`up(argv_factory=...)` for the stand-in servers."""
    return _standin_argv


@pytest.fixture
def standin_path() -> str:
    return STANDIN
