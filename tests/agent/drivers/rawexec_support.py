"""Helpers for raw_exec tests: log reading, polling, process-group inspection, a task harness."""

from __future__ import annotations

import glob
import os
import signal
import sys
import time
from collections.abc import Callable

from nomadpaas.agent.client.allocdir import AllocDir
from nomadpaas.agent.client.logmon.logmon import LogMon, LogmonConfig
from nomadpaas.agent.drivers.base import TaskConfig, TaskHandle
from nomadpaas.agent.drivers.rawexec.driver import RawExecDriver

PY = sys.executable
WAIT_S = 30.0  # generous: a loaded 2-core machine


def read_log(log_dir: str, task: str, stream: str = "stdout") -> str:
    """All rotated files of one stream, oldest first."""
    files = glob.glob(os.path.join(log_dir, f"{task}.{stream}.*"))
    files.sort(key=lambda p: int(p.rsplit(".", 1)[1]))
    return "".join(open(p, encoding="utf-8", errors="replace").read() for p in files)


def wait_for(
    predicate: Callable[[], object], timeout_s: float = WAIT_S, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def live_group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rindex(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry))
    return members


class Harness:
    def __init__(self, data_dir: str, driver: RawExecDriver, logmon: LogMon) -> None:
        self.alloc = AllocDir(data_dir, "a1b2c3d4-0000-0000-0000-000000000001")
        self.driver = driver
        self.logmon = logmon
        self.handles: list[TaskHandle] = []

    def start(
        self,
        task: str,
        command: str,
        *args: str,
        env: dict[str, str] | None = None,
        max_file_size_bytes: int = 1024 * 1024,
        cpu_shares: int = 0,
    ) -> TaskHandle:
        td = self.alloc.build([task])[task]
        self.logmon.start(
            task,
            LogmonConfig(
                log_dir=td.log_dir,
                stdout_log_file=f"{task}.stdout",
                stderr_log_file=f"{task}.stderr",
                stdout_fifo=td.stdout_fifo,
                stderr_fifo=td.stderr_fifo,
                max_file_size_bytes=max_file_size_bytes,
            ),
        )
        full_env = dict(os.environ)
        full_env.update(env or {})
        handle = self.driver.start_task(
            TaskConfig(
                id=task,
                alloc_id=self.alloc.alloc_id,
                name=task,
                command=command,
                args=args,
                env=full_env,
                alloc_dir=self.alloc.root,
                task_dir=td.dir,
                stdout_path=td.stdout_fifo,
                stderr_path=td.stderr_fifo,
                cpu_shares=cpu_shares,
            )
        )
        self.handles.append(handle)
        return handle

    def kill_leftovers(self) -> None:
        """Teardown safety net: SIGKILL every task group this harness started."""
        for handle in self.handles:
            try:
                os.killpg(int(handle.driver_state["PGID"]), signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log(self, task: str, stream: str = "stdout") -> str:
        return read_log(self.alloc.log_dir, task, stream)

    def wait_log(self, task: str, text: str, stream: str = "stdout") -> None:
        wait_for(lambda: text in self.log(task, stream), what=f"{text!r} in {task} {stream}")
