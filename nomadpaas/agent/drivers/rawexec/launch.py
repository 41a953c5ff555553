"""One task start's edges around the executor: its state dir made ready, the task side of
its log FIFOs, the announcement read, and a start that failed half-way undone; part of
drivers/rawexec (Nomad's executor launches and reports in Go)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from nomadpaas.agent.drivers.base import DriverError
from nomadpaas.agent.drivers.rawexec.handle import (
    ACK_FIFO,
    EXIT_FILE,
    PID_FILE,
    START_TIMEOUT_S,
    proc_start_time,
    readable,
)
from nomadpaas.agent.drivers.rawexec.orphans import (
    kill_executor,
    kill_stale_task,
    process_argvs,
    wrapper_state_dir,
)


def wait_announced(announce: int) -> tuple[int, int, int, int]:
    """Read what the wrapper announces: the task PID, then (native executor) the task's and
    the executor's start times and the executor's PID, 0 when not announced. EOF first
    means the task never started (or the spawner died with the request), and
    "!<errno> <what>" what failed before it could (executor.c; the words of Popen's
    OSError)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not readable(announce, remaining):
            break
        chunk = os.read(announce, 4096)
        if not chunk:
            break
        data += chunk
    if data.endswith(b"\n"):
        if not data.startswith(b"!"):
            fields = [int(field) for field in data.split()]
            pid, pid_start, wrapper_start, wrapper_pid = [*fields, 0, 0, 0][:4]
            return pid, pid_start, wrapper_start, wrapper_pid
        code, _, what = data[1:-1].partition(b" ")
        exc = OSError(int(code), os.strerror(int(code)), os.fsdecode(what))
        raise DriverError(f"failed to launch command with executor: {exc}")
    raise NotAnnounced("failed to launch command with executor: task process did not start")


class NotAnnounced(DriverError):
    """Neither the task nor a failure was announced (EOF or START_TIMEOUT_S)."""


def start_time_or_zero(pid: int) -> int:
    # A task that already exited and was reaped has no /proc entry; 0 never matches later.
    return proc_start_time(pid) or 0


def abort_start(wrapper: subprocess.Popen[bytes] | None, wrapper_pid: int, state_dir: str) -> None:
    """A start that failed half-way must not leave a task or wrapper behind."""
    try:
        with open(os.path.join(state_dir, PID_FILE)) as f:
            pid = int(f.read())
        os.killpg(pid, signal.SIGKILL)  # the task is its own group leader
    except (OSError, ValueError):
        pass
    if wrapper is not None:
        wrapper.kill()
        wrapper.wait()
        return
    # Forked by the spawner, not ours to wait for: killed only while its argv still names
    # this task's state dir (it may have exited by itself, and its PID been reused). Its
    # PID is unknown when it never announced: any process whose argv names the dir.
    if wrapper_pid:
        kill_executor(wrapper_pid, state_dir)
        return
    for pid, argv in process_argvs():
        if wrapper_state_dir(argv) == state_dir:
            kill_executor(pid, state_dir)


def prepare_state_dir(state_dir: str) -> None:
    """Give ``state_dir`` its ack FIFO and clear a last run's pid and exit files.

    Every start makes the FIFO before its executor can write task.pid or task.exit, so
    making the FIFO anew proves there is nothing to clear: one syscall for a task's first
    run (the task dir hook made the dir), instead of five and three caught exceptions.
    """
    ack = os.path.join(state_dir, ACK_FIFO)
    try:
        os.mkfifo(ack, 0o600)
    except FileExistsError:
        # Not the first run here: end a task an agent that died mid-start left running
        # unrecorded (else this start would run it twice), then clear what it left.
        kill_stale_task(state_dir)
    except FileNotFoundError:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)  # no task dir hook made it
        os.mkfifo(ack, 0o600)
        return
    else:
        return
    for name in (PID_FILE, EXIT_FILE):
        try:
            os.unlink(os.path.join(state_dir, name))
        except FileNotFoundError:
            pass


def open_stream(path: str) -> int:
    """The task side of a log FIFO, opened O_RDWR so writers never get SIGPIPE or block on open."""
    if not path:
        return os.open(os.devnull, os.O_WRONLY)
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)
