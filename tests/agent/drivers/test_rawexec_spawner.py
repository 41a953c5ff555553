"""The executor spawner (spawner.py, executor.c spawner mode): one native process forks each
task's executor. The executors it forks look like any other to orphan detection, hand the
task exactly fds 0-2 and default signals, outlive the spawner, and a dead spawner is
replaced on the next start without touching running tasks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent.drivers.rawexec_support import PY, Harness, live_group_members, wait_for

from nomadpaas.agent.client.logmon.logmon import LogMon
from nomadpaas.agent.drivers.base import DriverError, TaskConfig
from nomadpaas.agent.drivers.rawexec import spawner as spawner_module
from nomadpaas.agent.drivers.rawexec.driver import (
    RawExecDriver,
    kill_orphaned_tasks,
    wrapper_state_dir,
)
from nomadpaas.agent.drivers.rawexec.executor import MARK
from nomadpaas.agent.drivers.rawexec.handle import proc_start_time
from nomadpaas.agent.drivers.rawexec.spawner import SPAWNER_MARK, encode_request, spawner_for

OPEN_FDS = (
    "import os\n"
    "def is_open(fd):\n"
    "    try:\n"
    "        os.fstat(fd)\n"
    "    except OSError:\n"
    "        return False\n"
    "    return True\n"
    "print('fds', [fd for fd in range(1024) if is_open(fd)], flush=True)\n"
)


@pytest.fixture
def spawned(tmp_path: Path) -> Iterator[Harness]:
    driver = RawExecDriver()
    if driver.executor is None:
        pytest.skip("no C compiler: no native executor, no spawner")
    logmon = LogMon()
    harness = Harness(str(tmp_path), driver, logmon)
    try:
        yield harness
    finally:
        for task_id in driver.task_ids():
            driver.destroy_task(task_id, force=True)
        harness.kill_leftovers()
        logmon.close()


def _cmdline(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    return int(raw[raw.rindex(b")") + 2 :].split()[1])


def _spawner_pid(driver: RawExecDriver) -> int:
    assert driver.executor is not None
    pid = spawner_for(driver.executor).pid
    assert pid is not None
    return pid


def test_the_task_gets_fds_0_1_2_only_and_a_spawner_forked_executor(spawned: Harness) -> None:
    h = spawned.start("fds", PY, "-c", OPEN_FDS)
    result = spawned.driver.wait_task("fds", 30)
    assert result is not None and result.exit_code == 0
    spawned.wait_log("fds", "fds [0, 1, 2]\n")
    spawner = _spawner_pid(spawned.driver)
    executor = int(h.driver_state["WrapperPID"])
    assert _ppid(executor) == spawner  # forked by the spawner, not by us


def test_an_executor_shows_the_executor_argv_and_the_spawner_its_own(spawned: Harness) -> None:
    long_arg = "x" * 10_000  # more than the argv area holds: cut, the state dir intact
    h = spawned.start("title", "sh", "-c", "sleep 300", long_arg)
    executor = int(h.driver_state["WrapperPID"])
    assert _ppid(int(h.driver_state["PID"])) == executor
    argv = _cmdline(executor)
    state_dir = h.driver_state["StateDir"]
    assert argv[1:3] == [MARK.encode(), state_dir.encode()]
    assert os.path.basename(argv[3]) == b"sh" and argv[4:6] == [b"-c", b"sleep 300"]
    assert 0 < len(argv[6]) < len(long_arg) and set(argv[6]) == {ord("x")}
    assert argv[-1] == b""  # the area's last byte stays NUL: the kernel shows it all
    assert wrapper_state_dir(argv) == state_dir
    spawner_argv = _cmdline(_spawner_pid(spawned.driver))
    assert spawner_argv[1] == SPAWNER_MARK.encode()
    assert set(spawner_argv[2:]) == {b""}  # its padding blanked
    assert wrapper_state_dir(spawner_argv) is None
    assert len(b"\0".join(spawner_argv)) == len(b"\0".join(argv))  # the same area


def test_a_missing_work_dir_fails_the_start_with_popens_words(harness: Harness) -> None:
    td = harness.alloc.build(["cwd"])["cwd"]
    cfg = TaskConfig(id="cwd", alloc_id=harness.alloc.alloc_id, name="cwd", command="sh",
                     args=("-c", "true"), env=dict(os.environ), task_dir=td.dir,
                     work_dir="no-such-dir")  # fmt: skip
    missing = os.path.join(td.dir, "no-such-dir")
    why = f"[Errno 2] No such file or directory: '{missing}'"  # Popen's OSError, word for word
    expected = f"failed to launch command with executor: {why}"
    with pytest.raises(DriverError) as info:
        harness.driver.start_task(cfg)
    assert str(info.value) == expected
    assert harness.driver.task_ids() == []


def test_a_nul_in_an_argument_is_a_value_error_as_with_popen(harness: Harness) -> None:
    with pytest.raises(ValueError, match="embedded null byte"):
        harness.start("nul", "sh", "-c", "true\0false")
    with pytest.raises(ValueError, match="illegal environment variable name"):
        harness.start("eq", "sh", "-c", "true", env={"A=B": "c"})


def test_encode_request_fields() -> None:
    data = encode_request("/s", "/c", "/bin/x", ("a", ""), {"K": "v=w", "E": ""})
    assert data == b"/s\0/c\0/bin/x\0\x002\0a\0\0K=v=w\0E="
    data = encode_request("/s", "/c", "/bin/x", (), {}, autogroup_nice=-3)
    assert data == b"/s\0/c\0/bin/x\0-3\x000"


def test_kill_orphaned_tasks_kills_spawned_tasks_but_never_the_spawner(
    spawned: Harness,
) -> None:
    h = spawned.start("orphan", "sh", "-c", "sleep 300 & wait")
    spawner = _spawner_pid(spawned.driver)
    data_dir = os.path.dirname(spawned.alloc.alloc_root)
    assert kill_orphaned_tasks(data_dir) == 1
    wait_for(lambda: live_group_members(int(h.driver_state["PGID"])) == [], timeout_s=10)
    executor = int(h.driver_state["WrapperPID"])
    wait_for(lambda: proc_start_time(executor) is None, timeout_s=10, what="executor gone")
    assert proc_start_time(spawner) is not None
    assert _spawner_pid(spawned.driver) == spawner
    spawned.start("after", "sh", "-c", "exit 4")  # the same spawner serves on
    result = spawned.driver.wait_task("after", 30)
    assert result is not None and result.exit_code == 4


def test_a_killed_spawner_is_replaced_and_its_tasks_run_on(spawned: Harness) -> None:
    spawned.start("before", "sh", "-c", "echo ready; exec sleep 300")
    spawned.wait_log("before", "ready")
    old = _spawner_pid(spawned.driver)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: proc_start_time(old) is None, timeout_s=10, what="spawner death")
    spawned.start("after", "sh", "-c", "exit 3")
    assert _spawner_pid(spawned.driver) != old
    result = spawned.driver.wait_task("after", 30)
    assert result is not None and result.exit_code == 3
    assert spawned.driver.inspect_task("before").state == "running"
    spawned.driver.stop_task("before", timeout_s=10.0)
    stopped = spawned.driver.wait_task("before", 0)
    assert stopped is not None and (stopped.exit_code, stopped.signal) == (130, 2)


def test_a_spawner_that_dies_with_a_request_fails_that_start_only(spawned: Harness) -> None:
    """No reply: the start waits on its announce pipe alone, which reaches EOF when the
    spawner dies holding the request; the next start gets a new spawner."""
    spawned.start("warm", "sh", "-c", "exit 0")  # the spawner runs
    old = _spawner_pid(spawned.driver)
    os.kill(old, signal.SIGSTOP)  # takes the request into its socket, never reads it
    outcome: list[BaseException | None] = []

    def start() -> None:
        try:
            spawned.start("lost", "sh", "-c", "exit 0")
            outcome.append(None)
        except BaseException as exc:  # asserted below
            outcome.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    time.sleep(0.3)  # the request is in the socket; the start waits on its pipe
    assert thread.is_alive() and not outcome
    os.kill(old, signal.SIGKILL)
    thread.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], DriverError)
    assert "did not start" in str(outcome[0])
    spawned.start("next", "sh", "-c", "exit 4")
    assert _spawner_pid(spawned.driver) != old
    result = spawned.driver.wait_task("next", 30)
    assert result is not None and result.exit_code == 4


def test_replace_stops_only_the_spawner_that_took_the_request(spawned: Harness) -> None:
    """Several starts can see EOF from one dead spawner; the first replaces it, and the
    others must not stop its healthy successor."""
    spawned.start("one", "sh", "-c", "exit 0")
    assert spawned.driver.executor is not None
    spawner = spawner_for(spawned.driver.executor)
    first = _spawner_pid(spawned.driver)
    spawner.replace(first + 1_000_000)  # a PID that is not this spawner's: no effect
    assert spawner.pid == first and proc_start_time(first) is not None
    spawner.replace(first)
    assert spawner.pid is None
    wait_for(lambda: proc_start_time(first) is None, timeout_s=10, what="old spawner gone")
    spawned.start("two", "sh", "-c", "exit 0")
    assert _spawner_pid(spawned.driver) != first


def test_concurrent_starts_each_get_their_own_task(spawned: Harness) -> None:
    names = [f"c{i}" for i in range(24)]
    errors: list[BaseException] = []

    def start(batch: list[str]) -> None:
        try:
            for name in batch:
                spawned.start(name, "sh", "-c", f"echo {name}-$$; exit 0")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(names[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    pids = set()
    for h in spawned.handles:
        result = spawned.driver.wait_task(h.task_id, 30)
        assert result is not None and result.exit_code == 0
        spawned.wait_log(h.task_id, f"{h.task_id}-{h.driver_state['PID']}\n")
        pids.add(h.driver_state["PID"])
    assert len(pids) == len(names)


def test_a_huge_environment_still_starts(spawned: Harness) -> None:
    # 1.2 MB: more than one request holds, so the executor is started with Popen instead.
    env = {f"BIG{i}": "y" * 100_000 for i in range(12)}
    h = spawned.start("big", PY, "-c", "import os; print(len(os.environ['BIG11']))", env=env)
    result = spawned.driver.wait_task("big", 30)
    assert result is not None and result.exit_code == 0
    spawned.wait_log("big", "100000\n")
    assert _ppid(int(h.driver_state["WrapperPID"])) == os.getpid()
    spawned.start("mid", PY, "-c", "import os; print(len(os.environ['MID']))",
                  env={"MID": "z" * 100_000})  # fmt: skip
    spawned.wait_log("mid", "100000\n")


SIM = r"""
import json, os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # `nomadpaas agent &` from a script
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # passed on through exec too
from nomadpaas.agent.client.allocdir import AllocDir
from nomadpaas.agent.drivers.base import TaskConfig
from nomadpaas.agent.drivers.rawexec.driver import RawExecDriver
from nomadpaas.agent.drivers.rawexec.spawner import spawner_for
dirs = AllocDir(sys.argv[1], "a1").build(["t", "big"])
driver = RawExecDriver()
def start(name, env):
    return driver.start_task(TaskConfig(id=name, alloc_id="a1", name=name, command="sleep",
        args=("300",), env=env, task_dir=dirs[name].dir)).driver_state
forked = start("t", dict(os.environ))
# Too large for one spawner request: the executor is started with Popen (direct mode).
popened = start("big", {**os.environ, **{f"BIG{i}": "y" * 100_000 for i in range(12)}})
print(json.dumps([spawner_for(driver.executor).pid, forked, popened]), flush=True)
sys.stdin.read()
"""


def _ignored_and_blocked(pid: int) -> tuple[int, int]:
    """The SigIgn and SigBlk masks of ``pid`` (bit n-1 for signal n)."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["SigIgn"], 16), int(fields["SigBlk"], 16)


def test_tasks_outlive_the_spawner_and_get_default_signals(tmp_path: Path) -> None:
    """An agent with SIGINT ignored and SIGUSR1 blocked starts a task through its spawner
    and one with Popen (a request too large), then dies: its spawner goes (EOF on its
    socket), the executors and tasks stay, and neither task ignores or blocks a signal."""
    if RawExecDriver().executor is None:
        pytest.skip("no C compiler")
    sim = subprocess.Popen([sys.executable, "-c", SIM, str(tmp_path)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert sim.stdout is not None
        spawner, forked, popened = json.loads(sim.stdout.readline())
        ignored, blocked = _ignored_and_blocked(spawner)
        assert ignored & (1 << (signal.SIGINT - 1))  # the spawner's own: a stray ^C
        assert blocked == 0  # it emptied the mask it inherited, for every executor it forks
        assert _ppid(int(forked["WrapperPID"])) == spawner
        assert _ppid(int(popened["WrapperPID"])) == sim.pid
        sim.kill()
        sim.wait(30)
        wait_for(lambda: proc_start_time(spawner) is None, timeout_s=10, what="spawner exit")
        for state in (forked, popened):
            assert proc_start_time(int(state["WrapperPID"])) == state["WrapperStartTime"]
            assert proc_start_time(int(state["PID"])) == state["PIDStartTime"]
            ignored, blocked = _ignored_and_blocked(int(state["PID"]))
            # Signals 32 and 33 are glibc's own (thread cancel, setxid): its sigaction()
            # refuses to change them, so they keep what the agent's starter gave (a CI
            # runner may ignore 32); every other signal, SIGINT first, must be at its
            # default, and none blocked.
            glibc_own = (1 << 31) | (1 << 32)
            assert (ignored & ~glibc_own, blocked) == (0, 0), state["StateDir"]
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait(30)
        kill_orphaned_tasks(str(tmp_path))


def test_spawner_module_constants_match_the_c_source() -> None:
    source = Path(spawner_module.__file__).with_name("executor.c").read_text()
    assert f'#define SPAWNER_MARK "{SPAWNER_MARK}"' in source
    assert "#define REQUEST_MAX (1 << 20)" in source
    assert spawner_module.REQUEST_MAX_BYTES == 1 << 20


@pytest.mark.parametrize(
    ("request_fields", "expected"),
    [
        # The request format before the autogroup nice field: argc where nice is, no argc.
        ([b"/", b"/", b"/bin/echo", b"1", b"hi"], b"!22 malformed spawner request\n"),
        ([b"/", b"/", b"/bin/echo", b"", b"x"], b"!22 malformed spawner request\n"),
        ([b"/", b"/"], b"!22 malformed spawner request\n"),
    ],
)
def test_a_malformed_request_is_announced_as_such(
    tmp_path: Path, request_fields: list[bytes], expected: bytes
) -> None:
    """The spawner's child checks the request's head (state, cwd, command, nice, argc)
    before anything else and announces what is wrong instead of running a misparsed task."""
    executor = RawExecDriver().executor
    if executor is None:
        pytest.skip("no C compiler")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen([executor, SPAWNER_MARK, "x" * 16], stdin=theirs.fileno(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    theirs.close()
    announce_r, announce_w = os.pipe()
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        socket.send_fds(ours, [b"\0".join(request_fields)], [announce_w, null, null])
        os.close(announce_w)
        with os.fdopen(announce_r, "rb") as pipe:
            assert pipe.readline() == expected
    finally:
        os.close(null)
        ours.close()  # EOF: the spawner exits
        proc.wait(10)
