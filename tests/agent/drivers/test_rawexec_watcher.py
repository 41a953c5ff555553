"""raw_exec exit watcher: one thread wakes every task's waiter when its processes exit."""

from __future__ import annotations

import os
import subprocess
import threading
import time

from agent.drivers.rawexec_support import Harness, wait_for

from nomadpaas.agent.drivers.rawexec.watcher import ExitWatcher

QUICK_S = 10.0  # generous: a loaded 2-core machine


def _sleeper(seconds: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", seconds])


def test_callback_fires_once_when_the_process_exits() -> None:
    watcher = ExitWatcher()
    proc = _sleeper("30")
    fd = os.pidfd_open(proc.pid)
    fired: list[str] = []
    try:
        watcher.watch((fd,), lambda: fired.append(threading.current_thread().name))
        assert fired == []  # still running: nothing yet
        proc.kill()
        wait_for(lambda: fired, QUICK_S, "the exit callback")
        proc.wait()
        # One-shot: the pidfd stays readable, yet the loop does not call again.
        time.sleep(0.2)
        assert fired == ["rawexec-exits"]
    finally:
        proc.kill()
        proc.wait()
        os.close(fd)


def test_cancelled_watch_never_fires_and_the_fd_can_be_watched_again() -> None:
    watcher = ExitWatcher()
    proc = _sleeper("30")
    fd = os.pidfd_open(proc.pid)
    first: list[int] = []
    second: list[int] = []
    try:
        w = watcher.watch((fd,), lambda: first.append(1))
        watcher.cancel(w)
        watcher.watch((fd,), lambda: second.append(1))
        proc.kill()
        wait_for(lambda: second, QUICK_S, "the second watch")
        assert first == []
    finally:
        proc.kill()
        proc.wait()
        os.close(fd)


def test_watching_an_fd_again_tells_the_older_watch_at_once() -> None:
    watcher = ExitWatcher()
    proc = _sleeper("30")
    fd = os.pidfd_open(proc.pid)
    older: list[int] = []
    try:
        watcher.watch((fd,), lambda: older.append(1))
        watcher.watch((fd,), lambda: None)
        assert older == [1]  # it re-checks instead of sleeping forever
    finally:
        proc.kill()
        proc.wait()
        os.close(fd)


def test_watch_task_wakes_on_exit_and_wait_task_then_answers(harness: Harness) -> None:
    harness.start("short", "sh", "-c", "sleep 0.3; exit 3")
    exited = threading.Event()
    harness.driver.watch_task("short", exited.set)
    assert not exited.is_set()
    assert exited.wait(QUICK_S)
    result = harness.driver.wait_task("short", 5)
    assert result is not None and result.exit_code == 3


def test_watch_task_of_an_exited_task_fires_at_once(harness: Harness) -> None:
    harness.start("gone", "true")
    assert harness.driver.wait_task("gone", QUICK_S) is not None
    exited = threading.Event()
    harness.driver.watch_task("gone", exited.set)
    assert exited.wait(QUICK_S)


def test_watch_task_fires_when_the_wrapper_dies_without_the_task(harness: Harness) -> None:
    handle = harness.start("orphaned", "sleep", "30")
    exited = threading.Event()
    harness.driver.watch_task("orphaned", exited.set)
    os.kill(int(handle.driver_state["WrapperPID"]), 9)
    assert exited.wait(QUICK_S)
    result = harness.driver.wait_task("orphaned", 5)
    assert result is not None and result.err  # the executor is gone: status unknown
