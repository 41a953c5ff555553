"""raw_exec handle pieces: status parsing, /proc start times, the handle's serialised form."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import pytest

from nomadpaas.agent.drivers.base import ExitResult, RecoverError, TaskHandle
from nomadpaas.agent.drivers.rawexec.driver import RawExecDriver
from nomadpaas.agent.drivers.rawexec.handle import ProcessState, parse_status, proc_start_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0\n", ExitResult(0)),
        ("3\n", ExitResult(3)),
        ("130\n", ExitResult(130, signal=2)),
        ("137\n", ExitResult(137, signal=9)),
        ("128\n", ExitResult(128)),
        ("255\n", ExitResult(255)),
        ("13", None),  # no newline yet: still being written
        ("", None),
    ],
)
def test_parse_status(text: str, expected: ExitResult | None) -> None:
    assert parse_status(text) == expected


def test_proc_start_time_is_stable_and_none_for_zombies_and_the_gone() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        first = proc_start_time(child.pid)
        assert first is not None and first == proc_start_time(child.pid)
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # a zombie, not yet reaped
        assert proc_start_time(child.pid) is None
    finally:
        child.kill()
        child.wait()


def test_proc_start_time_reads_field_22_past_a_command_name_with_spaces_and_parens(
    tmp_path: pathlib.Path,
) -> None:
    """A command named like the fields that follow it must not shift them."""
    sleep = shutil.which("sleep")
    assert sleep is not None
    tricky = tmp_path / "x) Z 1 2 3"  # comm is the file name: ')', spaces, a fake state
    tricky.symlink_to(sleep)
    child = subprocess.Popen([str(tricky), "30"])
    try:
        with open(f"/proc/{child.pid}/stat", "rb") as f:
            raw = f.read()
        assert b"(x) Z 1 2 3)" in raw
        expected = int(raw[raw.rindex(b")") + 2 :].split()[19])
        assert proc_start_time(child.pid) == expected
    finally:
        child.kill()
        child.wait()


def test_handle_round_trips_through_json() -> None:
    state = ProcessState("/d/private/rawexec", 10, 111, 11, 112, 11, 1_700_000_000_000_000_000)
    handle = TaskHandle("alloc/web", "raw_exec", state.to_dict(), task_name="web")
    wire = json.loads(handle.to_json())
    assert wire == {
        "Version": 1,
        "Driver": "raw_exec",
        "TaskID": "alloc/web",
        "TaskName": "web",
        "DriverState": {
            "StateDir": "/d/private/rawexec",
            "WrapperPID": 10,
            "WrapperStartTime": 111,
            "PID": 11,
            "PIDStartTime": 112,
            "PGID": 11,
            "StartedAt": 1_700_000_000_000_000_000,
        },
    }
    back = TaskHandle.from_json(handle.to_json())
    assert back == handle
    assert ProcessState.from_dict(back.driver_state) == state


def test_recover_refuses_foreign_or_garbled_handles() -> None:
    d = RawExecDriver()
    with pytest.raises(RecoverError, match="driver 'exec'"):
        d.recover_task(TaskHandle("x", "exec", {}))
    with pytest.raises(RecoverError, match="version 99"):
        d.recover_task(TaskHandle("x", "raw_exec", {}, version=99))
    with pytest.raises(RecoverError, match="failed to decode driver state"):
        d.recover_task(TaskHandle("x", "raw_exec", {"PID": "nope"}))
