"""Process identity: a PID is ours only with the recorded start time and command line."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nomadpaas.stack.process import (
    ProcessRecord,
    create_time,
    is_ours,
    pid_alive,
    spawn_detached,
    terminate,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[ProcessRecord]:
    """A detached process started the way `up` starts servers; killed by PID afterwards."""
    import os

    record = spawn_detached(SLEEPER, tmp_path / "logs" / "sleeper.log", dict(os.environ))
    try:
        yield record
    finally:
        if pid_alive(record.pid):
            os.kill(record.pid, 9)
        pid_alive(record.pid)  # reaps it


def test_spawned_process_is_recognised_as_ours(sleeper: ProcessRecord) -> None:
    assert sleeper.create_time == create_time(sleeper.pid)
    assert sleeper.create_time is not None
    assert is_ours(sleeper)
    assert (Path(sleeper.log)).exists()


def test_spawned_process_runs_in_its_own_session(sleeper: ProcessRecord) -> None:
    import os

    assert os.getsid(sleeper.pid) == sleeper.pid
    assert os.getsid(sleeper.pid) != os.getsid(0)


def test_other_start_time_or_argv_is_not_ours(sleeper: ProcessRecord) -> None:
    assert sleeper.create_time is not None
    reused = dataclasses.replace(sleeper, create_time=sleeper.create_time - 1)
    assert not is_ours(reused)
    other_cmd = dataclasses.replace(sleeper, argv=(*sleeper.argv, "--other"))
    assert not is_ours(other_cmd)


def test_terminate_refuses_a_process_that_is_not_ours(tmp_path: Path) -> None:
    unrelated = subprocess.Popen(SLEEPER)
    try:
        ctime = create_time(unrelated.pid)
        assert ctime is not None
        # A stale record whose PID now belongs to an unrelated process.
        stale = ProcessRecord(unrelated.pid, ("python", "-m", "x"), "", 0.0, ctime)
        assert terminate(stale, timeout=1.0) is False
        assert unrelated.poll() is None
    finally:
        unrelated.kill()
        unrelated.wait(timeout=10)


def test_terminate_stops_our_process_and_reaps_it(sleeper: ProcessRecord) -> None:
    assert terminate(sleeper, timeout=10.0) is True
    assert not pid_alive(sleeper.pid)
    assert not is_ours(sleeper)


def test_terminate_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    import os

    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "open(__import__('sys').argv[1], 'w').close(); time.sleep(120)",
        str(tmp_path / "ready"),
    ]
    record = spawn_detached(stubborn, tmp_path / "stubborn.log", dict(os.environ))
    try:
        for _ in range(200):  # until the handler is installed
            if (tmp_path / "ready").exists():
                break
            __import__("time").sleep(0.05)
        assert terminate(record, timeout=0.5) is True
        assert not pid_alive(record.pid)
    finally:
        if pid_alive(record.pid):
            os.kill(record.pid, 9)


def test_malformed_entry_is_none() -> None:
    assert ProcessRecord.from_json({"pid": "x"}) is None
    assert ProcessRecord.from_json({"argv": []}) is None
    good = ProcessRecord(1, ("a",), "l", 2.0, 3)
    assert ProcessRecord.from_json(good.to_json()) == good
