"""Controls a task runner from other threads: open its gate, kill, restart, signal, shut
down; mirrors client/allocrunner/taskrunner/lifecycle.go (and TaskRunner.Shutdown).

*kill* (the task must die: `Killing` → prekill hooks → ShutdownDelay → driver stop →
`Terminated` → `Killed`) is kept apart from *shutdown* (the agent exits: the loop ends,
the task keeps running and its saved handle lets the next agent `recover_task` it).
`restart` (`Restart Signaled`) stops the task without counting against the policy.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from nomadpaas.agent.client.allocrunner.taskrunner.task_config import kill_timeout_ns
from nomadpaas.agent.client.allocrunner.taskrunner.task_runner_hook_phases import HookPhases
from nomadpaas.agent.drivers.base import DriverError, TaskHandle
from nomadpaas.agent.structs.alloc import (
    TASK_STATE_PENDING,
    TASK_WAITING_SHUTDOWN_DELAY,
    new_task_event,
)
from nomadpaas.agent.structs.duration import NS_PER_S

log = logging.getLogger("nomadpaas.agent.client.taskrunner")

SHUTDOWN_WAIT_S = 2.0  # how long shutdown(wait=True) waits for a running step to end
# A kill waits this long beyond KillTimeout for the run loop to reach `dead`.
KILL_GRACE_S = 20.0


class TaskLifecycle(HookPhases):
    """A task runner's controls, callable from any thread."""

    def open_gate(self) -> None:
        """Let the task start: the alloc runner's lifecycle coordinator calls this."""
        with self._wake:
            self._gate_open = True
            self._wake.notify_all()
        self._wake_up()

    def kill(self, event: dict[str, Any] | None, *, wait: bool = True) -> None:
        """The task must die: emit `event` (usually `Killing`), prekill hooks, task
        ShutdownDelay, then driver stop with KillSignal/KillTimeout; `Killed` follows."""
        handle: TaskHandle | None = None
        unstarted = False
        with self._wake:
            already = self._done.is_set() or self._kill_requested
            if not already:
                # Unclaimed, no loop will ever run: this kill finishes the task, and
                # claims it so that no start() slips in meanwhile.
                unstarted, self._claimed = not self._claimed, True
                self._kill_requested = True
                self._tracker.set_killed()
                handle = self._handle
                self._wake.notify_all()
        if already:
            if wait:
                self._done.wait(self._kill_wait_s())
            return
        if event is not None:
            self.emit(event)
        self._run_prekill()
        # Out of the start gate or a restart delay, after `Killing` (its `Killed` follows).
        self._wake_up()
        if handle is not None:
            self._shutdown_delay()
            self._stop_driver(handle)
        if unstarted:
            self._finish_unstarted()
        if wait:
            self._done.wait(self._kill_wait_s())

    def restart(self, event: dict[str, Any], *, failure: bool = False) -> bool:
        """`Restart Signaled`: stop the task and start it again without counting against
        the restart policy; False when the task is not running."""
        with self._wake:
            handle = self._handle
            if handle is None or self._kill_requested or self._done.is_set():
                return False
            self._restart_requested = True
            self._tracker.set_restart_triggered(failure=failure)
        self.emit(event)
        self._stop_driver(handle)
        return True

    def signal(self, sig: str) -> None:
        with self._lock:
            handle = self._handle
        if handle is None:
            raise DriverError(f"task {self.name!r} is not running")
        self.cfg.driver.signal_task(handle.task_id, sig)

    def shutdown(self, *, wait: bool = True) -> None:
        """The agent exits: end the loop, leave the task running (its handle is saved)."""
        with self._wake:
            self._shutdown = True
            self._wake.notify_all()
        self._wake_up()
        if not wait:
            return
        with self._wake:
            if self._stepping is threading.current_thread():
                return
            self._wake.wait_for(
                lambda: self._life is None or self._life_over or self._parked is not None,
                SHUTDOWN_WAIT_S,
            )

    def _kill_wait_s(self) -> float:
        return kill_timeout_ns(self.cfg.task, self.cfg.max_kill_timeout_ns) / NS_PER_S + (
            KILL_GRACE_S + int(self.cfg.task.get("ShutdownDelay") or 0) / NS_PER_S
        )

    def _shutdown_delay(self) -> None:
        delay_ns = int(self.cfg.task.get("ShutdownDelay") or 0)
        if delay_ns <= 0:
            return
        self._update(
            TASK_STATE_PENDING,
            new_task_event(TASK_WAITING_SHUTDOWN_DELAY, now_ns=time.time_ns()),
        )
        time.sleep(delay_ns / NS_PER_S)

    def _stop_driver(self, handle: TaskHandle) -> None:
        timeout_s = kill_timeout_ns(self.cfg.task, self.cfg.max_kill_timeout_ns) / NS_PER_S
        try:
            self.cfg.driver.stop_task(
                handle.task_id, timeout_s, str(self.cfg.task.get("KillSignal") or "")
            )
        except DriverError as exc:
            log.warning("task %s: stop: %s", self.task_id, exc)
