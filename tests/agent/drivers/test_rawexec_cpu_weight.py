"""A task's CPU weight (cpu_weight.py): its reserved MHz become its autogroup's nice value, as
Nomad's executor writes them into the task cgroup's cpu.shares, on every way a task starts
(spawner, Popen'd executor, sh wrapper); the task's own nice value stays 0."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent.drivers.rawexec_support import Harness

from nomadpaas.agent.client.logmon.logmon import LogMon
from nomadpaas.agent.drivers.rawexec.cpu_weight import autogroup_nice
from nomadpaas.agent.drivers.rawexec.driver import RawExecDriver

# Too large for one spawner request (1 MiB): the executor is started with Popen.
BIG_ENV = {f"BIG{i}": "y" * 100_000 for i in range(12)}


@pytest.mark.parametrize(
    ("mhz", "nice"),
    [
        (0, None),  # no reservation: the default weight
        (-5, None),
        (1, 19),  # the least weight there is
        (15, 19),
        (100, 10),  # Nomad's default task: about a tenth of 1024
        (500, 3),
        (1000, None),  # rounds to nice 0: left alone
        (1024, None),
        (2048, -3),
        (4000, -6),
        (10**9, -20),
    ],
)
def test_reserved_mhz_map_to_the_nearest_autogroup_nice(mhz: int, nice: int | None) -> None:
    assert autogroup_nice(mhz) == nice


def _autogroup(pid: int) -> tuple[str, int] | None:
    """(the autogroup's name, its nice value) from /proc/<pid>/autogroup; None for a process in
    no autogroup of its own (it reads empty): one whose session began before any setsid, as a
    container's init and whatever it starts without one (CI runs the suite so)."""
    with open(f"/proc/{pid}/autogroup") as f:
        fields = f.read().split()
    return (fields[0], int(fields[2])) if fields else None


def _own_nice(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    return int(raw[raw.rindex(b")") + 2 :].split()[16])


def _autogroups_settable() -> bool:
    """Autogroups exist and we may set one's nice value at any rate (root: no 100 ms limit)."""
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            enabled = f.read().strip() == "1"
    except OSError:
        return False
    return enabled and os.path.exists("/proc/self/autogroup") and os.geteuid() == 0


@pytest.fixture(params=["spawner", "popen-executor", "sh-wrapper"])
def started(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Harness, dict[str, str]]]:
    if not _autogroups_settable():
        pytest.skip("needs autogroups (CONFIG_SCHED_AUTOGROUP, enabled) and root")
    driver = RawExecDriver(native_executor=request.param != "sh-wrapper")
    if request.param != "sh-wrapper" and driver.executor is None:
        pytest.skip("no C compiler: no native executor")
    logmon = LogMon()
    harness = Harness(str(tmp_path), driver, logmon)
    try:
        yield harness, BIG_ENV if request.param == "popen-executor" else {}
    finally:
        for task_id in driver.task_ids():
            driver.destroy_task(task_id, force=True)
        harness.kill_leftovers()
        logmon.close()


def test_the_task_runs_at_its_weight_and_its_own_nice_stays_zero(
    started: tuple[Harness, dict[str, str]],
) -> None:
    harness, env = started
    ours = _autogroup(os.getpid())
    weighted = harness.start("small", "sleep", "300", env=env, cpu_shares=100)
    default = harness.start("plain", "sleep", "300", env=env, cpu_shares=1024)
    pid = int(weighted.driver_state["PID"])
    group = _autogroup(pid)
    assert group is not None  # the task's session is an autogroup of its own...
    assert group[1] == 10
    assert ours is None or group[0] != ours[0]  # ...so the agent's weight is untouched
    assert _own_nice(pid) == 0
    default_group = _autogroup(int(default.driver_state["PID"]))
    assert default_group is not None
    assert default_group[1] == 0
    assert _autogroup(os.getpid()) == ours
