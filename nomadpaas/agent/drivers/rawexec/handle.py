"""One raw_exec task process and its sh wrapper; mirrors drivers/rawexec/handle.go.

Process tree of a task (no Python process beside it, so the task outlives the agent)::

    agent ──Popen(start_new_session)──▶ sh wrapper (own session, ~1 MB)
                                          └─ setsid ▶ sh ▶ exec <command>   (own session/pgroup)
    agent ──request──▶ spawner ──fork──▶ executor (own session; executor.c, spawner.py)
                                          └─ vfork ▶ exec <command>          (own session/pgroup)

The wrapper runs the command in the foreground (so SIGINT/SIGQUIT are not ignored by the task, as
they would be for an `&` job of a non-interactive shell), records the task PID and, on exit, the
status (`$?`: code, or 128+n for signal n) with one write(2) ending in a newline; readers treat a
file without its newline as not written yet, which makes the write atomic for them without a
`tmp` + mv(1) fork per exit. It then blocks opening the `ack` FIFO, holding the task's
stdout/stderr FIFOs open, so output written while the agent was down stays in the pipe until
logmon reads it; `release()` (driver.destroy_task) opens the FIFO's write end to let the wrapper
go. Liveness is checked with pidfds and /proc start times (PID reuse).
"""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nomadpaas.agent.drivers.base import ExitResult
from nomadpaas.agent.drivers.rawexec.watcher import ExitWatcher, Watch

# The wrapper: $1 state dir, $2 setsid(1) path, then the command and its args.
# Its stdin is the write end of a pipe on which the inner sh announces the task PID, so start_task
# waits on an event instead of polling a file (stdin because dash only redirects fds 0-9, and
# Popen can only place stdin/stdout/stderr). Both shells swap it for /dev/null right after, so
# the task never inherits it. `setsid` (util-linux) calls setsid() and execs without forking,
# because the shell's child is not a group leader: the announced PID is the task's PID, PGID, SID.
# When the task exits the wrapper SIGKILLs what is left of its process group at once (Nomad kills
# a raw_exec task's leftovers too), microseconds after reaping the leader, so the PGID cannot have
# been reused by then, as it could be later, when a PID may belong to someone else's new group.
WRAPPER_SCRIPT = r"""d=$1 setsid=$2
shift 2
"$setsid" /bin/sh -c 'echo $$ >"$0/task.pid" || exit 127
echo $$ >&0; exec </dev/null
exec "$@"' "$d" "$@"
rc=$?
exec </dev/null
read pid <"$d/task.pid" && kill -9 -"$pid" 2>/dev/null
printf '%s\n' "$rc" >"$d/task.exit"
: <"$d/task.ack"
"""
WRAPPER_NAME = "nomadpaas-rawexec"

PID_FILE = "task.pid"
EXIT_FILE = "task.exit"
ACK_FIFO = "task.ack"

# How long the wrapper may take to fork the task and announce its PID before start fails.
START_TIMEOUT_S = 10.0
# How long release() waits for the wrapper to reach and pass its ack FIFO.
RELEASE_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.01
# Right after the task PID dies the status file is a few syscalls away: poll fast, then back off.
FIRST_POLL_INTERVAL_S = 0.0005
# Signals above this are not real signals; a larger status is a plain exit code.
_MAX_SIGNAL = 64
_SIGNAL_EXIT_BASE = 128
_PROC_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC
# /proc/<pid>/stat is one line of 52 fields; the command name is at most 64 bytes.
_PROC_STAT_MAX_BYTES = 4096
# Index of the start time (field 22) among the fields after the command name (field 3 is 0).
_START_TIME_FIELD = 19


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), None if gone or a zombie."""
    # os.open/os.read, not open(): no file objects, and no fstat and isatty ioctl per read
    # (two reads per task start, one per liveness check).
    try:
        fd = os.open(f"/proc/{pid}/stat", _PROC_OPEN_FLAGS)
    except OSError:
        return None
    try:
        raw = os.read(fd, _PROC_STAT_MAX_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not raw:
        return None  # reaped between open and read
    # The command name (field 2) may contain spaces and ')'; fields resume after the last ')'.
    # Split off only the fields up to the start time (state is field 3, start time field 22).
    fields = raw[raw.rindex(b")") + 2 :].split(None, _START_TIME_FIELD + 1)
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[_START_TIME_FIELD])


def pidfd_or_none(pid: int) -> int | None:
    """A pidfd for ``pid``; None when it exited and was reaped already."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def readable(fd: int, timeout_s: float) -> bool:
    """Wait for ``fd`` to become readable; poll(2), since select(2) stops at fd 1023 and an
    agent with a thousand tasks holds more pidfds than that. A closed fd counts as ready."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout_s * 1000))))


def parse_status(text: str) -> ExitResult | None:
    """Parse the wrapper's exit file; None while incomplete (no trailing newline yet)."""
    if not text.endswith("\n"):
        return None
    code = int(text.strip())
    is_signal = _SIGNAL_EXIT_BASE < code <= _SIGNAL_EXIT_BASE + _MAX_SIGNAL
    sig = code - _SIGNAL_EXIT_BASE if is_signal else 0
    return ExitResult(exit_code=code, signal=sig)


@dataclass(frozen=True)
class ProcessState:
    """The serialisable part of a handle (``TaskHandle.DriverState`` for raw_exec)."""

    state_dir: str
    wrapper_pid: int
    wrapper_start_time: int
    pid: int
    pid_start_time: int
    pgid: int
    started_at_ns: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "StateDir": self.state_dir,
            "WrapperPID": self.wrapper_pid,
            "WrapperStartTime": self.wrapper_start_time,
            "PID": self.pid,
            "PIDStartTime": self.pid_start_time,
            "PGID": self.pgid,
            "StartedAt": self.started_at_ns,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ProcessState:
        return cls(
            state_dir=str(data["StateDir"]),
            wrapper_pid=int(data["WrapperPID"]),
            wrapper_start_time=int(data["WrapperStartTime"]),
            pid=int(data["PID"]),
            pid_start_time=int(data["PIDStartTime"]),
            pgid=int(data["PGID"]),
            started_at_ns=int(data["StartedAt"]),
        )


class TaskProcess:
    """A running (or exited, not yet destroyed) task: wait, signal, kill group, release.

    ``wrapper`` is the Popen when the wrapper is this process's child; None after re-attach
    and for an executor the spawner forked (then a pidfd tells when it exits).
    """

    def __init__(
        self,
        task_id: str,
        name: str,
        state: ProcessState,
        wrapper: subprocess.Popen[bytes] | None,
        *,
        pidfd: int | None = None,
        wrapper_pidfd: int | None = None,
    ) -> None:
        """``pidfd``: the task's, opened by a caller that just started it and read its start
        time after opening (so it is this task's); otherwise it is opened and checked here.
        ``wrapper_pidfd``: the wrapper's, likewise, when the wrapper is not our child (forked
        by the spawner); otherwise opened by the first watch()."""
        self.task_id = task_id
        self.name = name
        self.state = state
        self._wrapper = wrapper
        self._lock = threading.Lock()
        self._result: ExitResult | None = None
        self._completed_at_ns = 0
        self._pidfd: int | None = (
            pidfd if pidfd is not None else self._open_pidfd(state.pid, state.pid_start_time)
        )
        self._wrapper_fd: int | None = wrapper_pidfd
        self._watch: Watch | None = None
        self._watcher: ExitWatcher | None = None

    @staticmethod
    def _open_pidfd(pid: int, start_time: int) -> int | None:
        fd = pidfd_or_none(pid)
        if fd is None:
            return None
        # Check after opening: the pidfd pins the process, so a match now cannot be a reused PID.
        if proc_start_time(pid) != start_time:
            os.close(fd)
            return None
        return fd

    @property
    def completed_at_ns(self) -> int:
        return self._completed_at_ns

    def task_alive(self) -> bool:
        return proc_start_time(self.state.pid) == self.state.pid_start_time

    def wrapper_alive(self) -> bool:
        if self._wrapper is not None:
            return self._wrapper.poll() is None
        fd = self._wrapper_fd
        if fd is not None:
            return not readable(fd, 0)  # a pidfd turns readable when its process exits
        return proc_start_time(self.state.wrapper_pid) == self.state.wrapper_start_time

    def poll(self) -> ExitResult | None:
        """The exit result if the wrapper recorded it (or was lost), else None."""
        with self._lock:
            if self._result is not None:
                return self._result
            path = os.path.join(self.state.state_dir, EXIT_FILE)
            result = self._read_exit(path)
            if result is None and not self.wrapper_alive():
                result = self._read_exit(path)  # it may have written just before dying
                if result is None:
                    result = ExitResult(-1, err="executor exited without recording the exit status")
                    self._completed_at_ns = time.time_ns()
            if result is not None:
                # The pidfd stays open until release(): closing it here would race wait()ers.
                self._result = result
            return result

    def _read_exit(self, path: str) -> ExitResult | None:
        try:
            with open(path) as f:
                result = parse_status(f.read())
            # File times come from the kernel's coarse clock (a tick behind time_ns()), so
            # a task that exits at once can look as if it ended before it started.
            mtime = os.stat(path).st_mtime_ns
            self._completed_at_ns = max(mtime, self.state.started_at_ns)
        except FileNotFoundError:
            return None
        return result

    def wait(self, timeout_s: float | None) -> ExitResult | None:
        """Block until the task exits (None on timeout); woken by the task's pidfd."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        delay = FIRST_POLL_INTERVAL_S
        while True:
            result = self.poll()
            if result is not None:
                return result
            remaining = 3600.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return None
            pidfd = self._pidfd
            if pidfd is not None and not self._readable(pidfd, 0):
                # Bounded so a wrapper lost without its task exiting is still noticed.
                self._readable(pidfd, min(remaining, 1.0))
            else:
                # Task gone; the wrapper is about to write the exit file.
                time.sleep(min(remaining, delay))
                delay = min(delay * 2, POLL_INTERVAL_S)

    @staticmethod
    def _readable(fd: int, timeout_s: float) -> bool:
        return readable(fd, timeout_s)

    def watch(self, watcher: ExitWatcher, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, soon after the task or its wrapper exits (at once if one
        already did); it may also fire early, so the caller checks ``poll``/``wait``."""
        with self._lock:
            if self._watch is not None and self._watcher is not None:
                self._watcher.cancel(self._watch)
                self._watch = None
            if self._wrapper_fd is None:
                self._wrapper_fd = self._open_wrapper_fd()
            fds = tuple(fd for fd in (self._pidfd, self._wrapper_fd) if fd is not None)
            gone = self._result is not None or self._pidfd is None or self._wrapper_fd is None
        if gone:
            callback()
            return
        # Outside our lock: the callback may take the caller's locks.
        w = watcher.watch(fds, callback)
        with self._lock:
            self._watch, self._watcher = w, watcher

    def _open_wrapper_fd(self) -> int | None:
        if self._wrapper is not None and self._wrapper.returncode is not None:
            return None
        fd = pidfd_or_none(self.state.wrapper_pid)
        if fd is None:
            return None
        if self._wrapper is None and (
            proc_start_time(self.state.wrapper_pid) != self.state.wrapper_start_time
        ):
            os.close(fd)  # a reused PID: the wrapper we knew is gone
            return None
        return fd

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the main PID; a task that is already gone is not an error."""
        with self._lock:
            pidfd = self._pidfd
            if pidfd is None:
                return
            try:
                signal.pidfd_send_signal(pidfd, sig)
            except ProcessLookupError:
                pass

    def kill_group(self) -> None:
        """SIGKILL every process left in the task's process group (children of `npm start`)."""
        try:
            os.killpg(self.state.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def release(self) -> None:
        """Let the wrapper exit (it holds the log FIFOs until told) and reap it if ours."""
        ack = os.path.join(self.state.state_dir, ACK_FIFO)
        deadline = time.monotonic() + RELEASE_TIMEOUT_S
        while self.wrapper_alive() and time.monotonic() < deadline:
            try:
                os.close(os.open(ack, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as exc:
                if exc.errno not in (errno.ENXIO, errno.ENOENT):
                    raise
                time.sleep(POLL_INTERVAL_S)  # not yet blocked on the FIFO
                continue
            self._wait_wrapper_gone(deadline)
            break
        if self.wrapper_alive():
            self._kill_wrapper()
        with self._lock:
            self._close_pidfd()

    def _wait_wrapper_gone(self, deadline: float) -> None:
        if self._wrapper is not None:
            try:
                self._wrapper.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            return
        fd = self._wrapper_fd
        if fd is not None:
            readable(fd, max(0.0, deadline - time.monotonic()))
            return
        while self.wrapper_alive() and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)

    def _kill_wrapper(self) -> None:
        if self._wrapper is not None:
            self._wrapper.kill()
            self._wrapper.wait()
            return
        if self._wrapper_fd is not None:
            try:
                signal.pidfd_send_signal(self._wrapper_fd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        try:
            fd = os.pidfd_open(self.state.wrapper_pid)
        except ProcessLookupError:
            return
        try:
            if proc_start_time(self.state.wrapper_pid) == self.state.wrapper_start_time:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)

    def _close_pidfd(self) -> None:
        if self._watch is not None and self._watcher is not None:
            self._watcher.cancel(self._watch)
            self._watch = None
        for fd in (self._pidfd, self._wrapper_fd):
            if fd is not None:
                os.close(fd)
        self._pidfd = self._wrapper_fd = None
