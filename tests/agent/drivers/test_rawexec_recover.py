"""Tasks outlive the agent: SIGKILL a driver process, re-attach from its handles, lose nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from agent.drivers.rawexec_support import PY, Harness, live_group_members, read_log, wait_for

from nomadpaas.agent.client.allocdir import AllocDir
from nomadpaas.agent.client.logmon.logmon import LogMon, LogmonConfig
from nomadpaas.agent.drivers.base import RecoverError, TaskConfig, TaskHandle
from nomadpaas.agent.drivers.rawexec.driver import RawExecDriver
from nomadpaas.agent.drivers.rawexec.handle import proc_start_time
from nomadpaas.agent.drivers.rawexec.orphans import process_argvs

SIM = str(Path(__file__).with_name("agent_sim.py"))
ALLOC_ID = "5e1f0000-0000-0000-0000-00000000a11c"
TASKS = ("t1", "t2", "t3")
FILE_SIZE = 500  # bytes: ~22 lines per file, so several rotations happen
LINE = re.compile(r"^(t\d)-marker line (\d{6})$")


def _config(alloc: AllocDir, task: str) -> LogmonConfig:
    td = alloc.task_dir(task)
    return LogmonConfig(
        log_dir=td.log_dir,
        stdout_log_file=f"{task}.stdout",
        stderr_log_file=f"{task}.stderr",
        stdout_fifo=td.stdout_fifo,
        stderr_fifo=td.stderr_fifo,
        max_files=1000,
        max_file_size_bytes=FILE_SIZE,
    )


def _numbered(text: str) -> list[int]:
    return [int(m.group(2)) for line in text.splitlines() if (m := LINE.match(line))]


def _task_processes(marker: str) -> list[int]:
    """Live python processes running the task program with ``marker`` (not the sh wrappers).

    The marker is the task's exit-file path, unique to this test's tmp dir, so a concurrent run
    of this test elsewhere on the machine is not counted."""
    return [
        pid
        for pid, argv in process_argvs()
        if argv[0] == PY.encode() and marker.encode() in argv and proc_start_time(pid)
    ]


def _kill_leftovers(handles: list[TaskHandle]) -> None:
    for h in handles:
        state = h.driver_state
        try:
            os.killpg(int(state["PGID"]), signal.SIGKILL)
        except ProcessLookupError:
            pass
        wrapper = int(state["WrapperPID"])
        if proc_start_time(wrapper) == int(state["WrapperStartTime"]):
            os.kill(wrapper, signal.SIGKILL)


def test_driver_reattaches_after_agent_sigkill_and_collects_logs_and_exit_codes(
    tmp_path: Path,
) -> None:
    data_dir = str(tmp_path)
    handles_path = tmp_path / "handles.json"
    alloc = AllocDir(data_dir, ALLOC_ID)
    sim = subprocess.Popen([PY, SIM, data_dir, str(handles_path), str(FILE_SIZE), *TASKS])
    handles: list[TaskHandle] = []
    logmon: LogMon | None = None
    driver = RawExecDriver()
    try:
        wait_for(handles_path.exists, what="the simulated agent to start its tasks")
        handles = [TaskHandle.from_dict(d) for d in json.loads(handles_path.read_text())]
        for task in TASKS:
            wait_for(lambda t=task: len(_numbered(read_log(alloc.log_dir, t))) >= 20)

        # The agent dies hard. Its tasks must not.
        sim.kill()
        sim.wait(30)
        for h in handles:
            pid, start = int(h.driver_state["PID"]), int(h.driver_state["PIDStartTime"])
            assert proc_start_time(pid) == start, f"{h.task_id} died with the agent"

        # Nobody copies the pipes now: the files stop growing while the tasks keep printing.
        sizes = [len(read_log(alloc.log_dir, t)) for t in TASKS]
        time.sleep(0.5)
        assert [len(read_log(alloc.log_dir, t)) for t in TASKS] == sizes

        # t2 exits (code 7) while the agent is dead.
        (tmp_path / "exit-t2").touch()
        t2_pid = int(handles[1].driver_state["PID"])
        wait_for(lambda: proc_start_time(t2_pid) is None, what="t2 to exit")

        # A new agent process re-attaches.
        logmon = LogMon()
        for task in TASKS:
            logmon.start(task, _config(alloc, task))
        for h in handles:
            driver.recover_task(TaskHandle.from_json(h.to_json()))
            driver.recover_task(h)  # idempotent
        assert sorted(driver.task_ids()) == sorted(TASKS)

        t2 = driver.wait_task("t2", 30)
        assert t2 is not None and (t2.exit_code, t2.signal) == (7, 0)
        for task in ("t1", "t3"):
            assert driver.inspect_task(task).state == "running"
            marker = str(tmp_path / f"exit-{task}")
            assert len(_task_processes(marker)) == 1, "recovery must not duplicate"
        assert _task_processes(str(tmp_path / "exit-t2")) == []

        # Logging goes on after recovery, then a normal stop reports the exit status.
        before = len(_numbered(read_log(alloc.log_dir, "t1")))
        wait_for(lambda: len(_numbered(read_log(alloc.log_dir, "t1"))) > before + 20)
        for task in ("t1", "t3"):
            driver.stop_task(task, timeout_s=10.0)
            result = driver.wait_task(task, 0)
            assert result is not None and (result.exit_code, result.signal) == (0, 0)
        for task in TASKS:
            driver.destroy_task(task)
            logmon.stop(task)
        for h in handles:
            pgid = int(h.driver_state["PGID"])
            wait_for(lambda g=pgid: live_group_members(g) == [], timeout_s=10)
            wrapper = int(h.driver_state["WrapperPID"])
            assert proc_start_time(wrapper) != int(h.driver_state["WrapperStartTime"])

        for task, last in (("t1", "bye"), ("t2", "final"), ("t3", "bye")):
            text = read_log(alloc.log_dir, task)
            numbers = _numbered(text)
            assert numbers == list(range(len(numbers))), f"{task}: lines lost or duplicated"
            assert text.splitlines()[-1] == last
            files = sorted(
                (p for p in os.listdir(alloc.log_dir) if p.startswith(f"{task}.stdout.")),
                key=lambda p: int(p.rsplit(".", 1)[1]),
            )
            assert [int(p.rsplit(".", 1)[1]) for p in files] == list(range(len(files)))
            assert len(files) >= 2  # rotated
            for name in files[:-1]:
                body = (Path(alloc.log_dir) / name).read_bytes()
                assert len(body) <= FILE_SIZE and body.endswith(b"\n")
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait(30)
        if logmon is not None:
            logmon.close()
        _kill_leftovers(handles)


def test_recover_fails_when_the_wrapper_is_gone_and_kills_the_orphan(tmp_path: Path) -> None:
    alloc = AllocDir(str(tmp_path), ALLOC_ID)
    td = alloc.build(["orphan"])["orphan"]
    first = RawExecDriver()
    h = first.start_task(
        TaskConfig(id="orphan", alloc_id=ALLOC_ID, name="orphan", command="sleep",
                   args=("300",), env=dict(os.environ), task_dir=td.dir)
    )  # fmt: skip
    try:
        # Kill only the wrapper: the exit status of the task can no longer be collected.
        wrapper = int(h.driver_state["WrapperPID"])
        os.kill(wrapper, signal.SIGKILL)
        wait_for(lambda: proc_start_time(wrapper) is None, timeout_s=10, what="wrapper death")
        second = RawExecDriver()  # a new agent process that never knew the task
        with pytest.raises(RecoverError, match="executor process is gone"):
            second.recover_task(h)
        wait_for(lambda: live_group_members(int(h.driver_state["PGID"])) == [], timeout_s=10)
    finally:
        _kill_leftovers([h])


def test_a_task_started_but_never_recorded_is_not_run_twice(
    harness: Harness, driver: RawExecDriver
) -> None:
    # An agent that dies while its executor is being forked never records the start, but
    # the task runs on. The next agent starts the task anew in the same dir: the one left
    # running is ended first, so the task does not run twice.
    first = harness.start("t", "/bin/sleep", "300")
    first_pid = int(first.driver_state["PID"])
    first_executor = int(first.driver_state["WrapperPID"])
    executor_started = proc_start_time(first_executor)
    next_agent = RawExecDriver(native_executor=driver.executor is not None)
    config = next_agent_config(harness, "t")
    second = next_agent.start_task(config)
    try:
        wait_for(lambda: not live_group_members(first_pid), what="the unrecorded task ended")
        # ... and its executor with it (not merely left waiting to be released).
        wait_for(
            lambda: proc_start_time(first_executor) != executor_started,
            what="the unrecorded task's executor ended",
        )
        assert live_group_members(int(second.driver_state["PID"]))
    finally:
        next_agent.destroy_task("t", force=True)


def test_a_restart_leaves_other_processes_alone(harness: Harness, driver: RawExecDriver) -> None:
    # The last run's task.pid names a process that is not this dir's task (a reused PID):
    # a new start kills nothing.
    unrelated = subprocess.Popen(["/bin/sleep", "300"], start_new_session=True)
    try:
        handle = harness.start("t", "/bin/true")
        wait_for(lambda: driver.wait_task("t", 0.1) is not None, what="the task's exit")
        driver.destroy_task("t", force=True)
        state_dir = str(handle.driver_state["StateDir"])
        Path(state_dir, "task.pid").write_text(str(unrelated.pid))
        harness.start("t", "/bin/true")
        assert unrelated.poll() is None
    finally:
        unrelated.kill()
        unrelated.wait()


def next_agent_config(harness: Harness, task: str) -> TaskConfig:
    td = harness.alloc.task_dir(task)
    return TaskConfig(
        id=task,
        alloc_id=harness.alloc.alloc_id,
        name=task,
        command="/bin/sleep",
        args=("300",),
        env=dict(os.environ),
        alloc_dir=harness.alloc.root,
        task_dir=td.dir,
        stdout_path=td.stdout_fifo,
        stderr_path=td.stderr_fifo,
    )
