"""Detached server processes: spawn them, recognise them later by PID, stop only them.

A PID alone is not an identity: after a reboot or a long uptime the number can belong to
an unrelated process. A process is ours only if its PID is alive, is not a zombie, has
the start time we recorded (field 22 of /proc/<pid>/stat, clock ticks since boot) and the
command line we started. Without /proc (not Linux) we can only check that the PID lives.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ProcessRecord",
    "create_time",
    "is_ours",
    "pid_alive",
    "spawn_detached",
    "terminate",
]

_PROC = Path("/proc")
#: How often the stop loop looks again whether a signalled process is gone.
_POLL_S = 0.05
#: Upper bound on exec completing after spawn (normally microseconds).
_EXEC_WAIT_S = 5.0


@dataclass(frozen=True)
class ProcessRecord:
    """One server `up` started, as stack.json remembers it.

    Parameters:
        pid: its process ID.
        argv: the exact command line it was started with.
        log: the file its stdout and stderr go to.
        started_at: when `up` started it (Unix seconds).
        create_time: its start time in clock ticks since boot (from /proc), None
            where /proc is missing; with the argv it tells our process from a reused PID.
    """

    pid: int
    argv: tuple[str, ...]
    log: str
    started_at: float
    create_time: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "argv": list(self.argv),
            "log": self.log,
            "started_at": self.started_at,
            "create_time": self.create_time,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord | None:
        """The record, or None when the entry is malformed (hand-edited, truncated)."""
        try:
            pid = int(data["pid"])
            argv = tuple(str(a) for a in data["argv"])
            ctime = data.get("create_time")
            return cls(
                pid=pid,
                argv=argv,
                log=str(data.get("log", "")),
                started_at=float(data.get("started_at", 0.0)),
                create_time=int(ctime) if ctime is not None else None,
            )
        except (KeyError, TypeError, ValueError):
            return None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may contain spaces)."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ..." — comm can hold ")" so split at the last one.
    return raw[raw.rfind(")") + 2 :].split()


def create_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None if unknown or gone."""
    fields = _stat_fields(pid)
    # After "(comm)": index 0 is field 3 (state), so field 22 (starttime) is index 19.
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def _cmdline(pid: int) -> tuple[str, ...] | None:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our own child, so it does not stay a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: init reaps it


def pid_alive(pid: int) -> bool:
    """True when `pid` runs (zombies count as dead: they only wait to be reaped)."""
    if pid <= 0:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, but someone else's
    fields = _stat_fields(pid)
    return not (fields and fields[0] in ("Z", "X"))


def is_ours(record: ProcessRecord) -> bool:
    """True when the process in `record` still runs and is the one we started."""
    if not pid_alive(record.pid):
        return False
    if not _PROC.is_dir():
        return True  # no way to tell a reused PID apart here
    if record.create_time is not None and create_time(record.pid) != record.create_time:
        return False
    return _cmdline(record.pid) == record.argv


def spawn_detached(argv: Sequence[str], log: Path, env: Mapping[str, str]) -> ProcessRecord:
    """Start `argv` in its own session with stdout and stderr appended to `log`.

    Its own session: no terminal hang-up or Ctrl-C of the CLI reaches it, and it outlives
    the CLI. `posix_spawn` rather than `subprocess.Popen`, because a Popen object that is
    never waited for warns when collected, and this process is meant to outlive us.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, fd, 1),
            (os.POSIX_SPAWN_DUP2, fd, 2),
        ]
        pid = os.posix_spawn(argv[0], list(argv), dict(env), file_actions=actions, setsid=True)
    finally:
        os.close(fd)
    _wait_exec(pid)
    return ProcessRecord(
        pid=pid,
        argv=tuple(argv),
        log=str(log),
        started_at=time.time(),
        create_time=create_time(pid),
    )


def _wait_exec(pid: int) -> None:
    """Wait until the child's new command line is readable.

    The spawning call returns as soon as exec releases the old memory, a moment before
    the kernel sets up the new arguments; meanwhile /proc/<pid>/cmdline reads empty and
    `is_ours` would not recognise our own child.
    """
    if not _PROC.is_dir():
        return
    deadline = time.monotonic() + _EXEC_WAIT_S
    while not _cmdline(pid) and pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.005)


def terminate(record: ProcessRecord, timeout: float) -> bool:
    """SIGTERM our process, SIGKILL it after `timeout` seconds; False if it was not ours.

    The identity is checked right before each signal, so a PID that was reused in between
    is never signalled.
    """
    if not is_ours(record):
        return False
    _signal(record.pid, signal.SIGTERM)
    if _wait_gone(record.pid, timeout):
        return True
    if is_ours(record):
        _signal(record.pid, signal.SIGKILL)
        # SIGKILL cannot be ignored; the bound only guards against an unkillable D state.
        _wait_gone(record.pid, 10.0)
    return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True
