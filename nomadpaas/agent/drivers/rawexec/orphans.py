"""Recognise raw_exec executors by their argv and kill a data dir's leftover tasks; no
Nomad file mirrors this (its executors are plugin processes it tracks by reattach config).

An executor's /proc/<pid>/cmdline is ``<exe> --nomadpaas-rawexec <state dir> <command>
<args...>``: its own argv, or, for an executor forked by the spawner, the spawner's argv
area rewritten to say the same (cut to fit, then NUL-filled: trailing empty strings). The sh
wrapper's is ``/bin/sh -c <script> nomadpaas-rawexec <state dir> ...``. The spawner's own
argv[1] is another word, so it is never taken for an executor.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

from nomadpaas.agent.drivers.rawexec.executor import MARK as EXECUTOR_MARK
from nomadpaas.agent.drivers.rawexec.executor import NAME_PREFIX as EXECUTOR_PREFIX
from nomadpaas.agent.drivers.rawexec.handle import (
    PID_FILE,
    WRAPPER_NAME,
    WRAPPER_SCRIPT,
    pidfd_or_none,
)


def wrapper_state_dir(argv: list[bytes]) -> str | None:
    """The state dir of a task's executor or sh wrapper, from its argv (trailing empty
    strings allowed); None for any other process, the spawner included."""
    if argv[:4] == [b"/bin/sh", b"-c", WRAPPER_SCRIPT.encode(), WRAPPER_NAME.encode()]:
        return os.fsdecode(argv[4]) if len(argv) > 4 else None
    if (
        len(argv) > 2
        and argv[1] == EXECUTOR_MARK.encode()
        and os.path.basename(argv[0]).startswith(EXECUTOR_PREFIX.encode())
    ):
        return os.fsdecode(argv[2])
    return None


def _argv(pid: int | str) -> list[bytes] | None:
    """The argv of ``pid`` split at NULs, as /proc says now; None when unreadable."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return None


def state_dir_of(pid: int) -> str | None:
    """The state dir named by the argv of ``pid`` if it is a task's executor or sh
    wrapper now (`wrapper_state_dir`); None otherwise, or when it is gone."""
    argv = _argv(pid)
    return None if argv is None else wrapper_state_dir(argv)


def process_argvs() -> Iterator[tuple[int, list[bytes]]]:
    """(PID, argv split at NULs) of every process whose /proc cmdline is readable now."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (argv := _argv(entry)) is not None:
            yield int(entry), argv


def parent_pid(pid: int) -> int | None:
    """The parent PID of ``pid`` as /proc says now; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        return int(raw[raw.rindex(b")") + 2 :].split()[1])
    except (OSError, ValueError):
        return None


def _task_pid(state_dir: str) -> int | None:
    """The task PID an executor wrote in ``state_dir``; None when there is none."""
    try:
        with open(os.path.join(state_dir, PID_FILE)) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _killpg(pgid: int) -> bool:
    """SIGKILL the process group ``pgid``; whether it was sent."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        return False
    return True


def kill_orphaned_tasks(data_dir: str) -> int:
    """SIGKILL every raw_exec task (and its executor) whose state lives under ``data_dir``.

    For `-dev` agents and test fixtures: tasks outlive a killed agent by design, so whoever
    throws a data dir away must end its tasks. Matches executors by their exact argv (marker,
    or the sh wrapper's script and name) and state dir, and a task only if it is the
    executor's child. Returns the tasks killed.
    """
    root = os.path.realpath(data_dir) + os.sep
    killed = 0
    for wrapper, argv in process_argvs():
        state_dir = wrapper_state_dir(argv)
        if state_dir is None or not os.path.realpath(state_dir).startswith(root):
            continue
        if kill_executor(wrapper, state_dir, task=_task_pid(state_dir)):
            killed += 1
    return killed


def _names(pid: int, state_dir: str) -> bool:
    """Whether the argv of ``pid`` says it is the executor (or sh wrapper) of ``state_dir``."""
    found = state_dir_of(pid)
    return found is not None and (
        found == state_dir or os.path.realpath(found) == os.path.realpath(state_dir)
    )


def kill_executor(executor: int, state_dir: str, *, task: int | None = None) -> bool:
    """SIGKILL the executor (or sh wrapper) ``executor`` if its argv names ``state_dir``,
    and before it its ``task``'s process group if the task is still its child. Through a
    pidfd opened before the checks: should the executor exit and its PID be reused
    meanwhile, the signal goes nowhere instead of to a stranger; and while the executor
    lives it has not reaped the task, so the task's PID cannot have been reused either.
    Returns whether the task was signalled."""
    fd = pidfd_or_none(executor)
    if fd is None:
        return False
    try:
        if not _names(executor, state_dir):
            return False
        killed = task is not None and parent_pid(task) == executor and _killpg(task)
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        return killed
    finally:
        os.close(fd)


def kill_stale_task(state_dir: str) -> bool:
    """SIGKILL the task, and its executor, that an earlier start left running from
    ``state_dir`` unknown to this agent: one whose agent died before the start was
    recorded (the executor forks on, by design). A new start in that dir would otherwise
    run the task twice. True if there was one. Only the executor of ``state_dir`` (its
    argv says so) and its own child are touched: a reused PID is left alone."""
    task = _task_pid(state_dir)
    executor = None if task is None else parent_pid(task)
    if executor is None:
        return False
    return kill_executor(executor, state_dir, task=task)
