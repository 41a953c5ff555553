"""Runs one task for its whole life: prestart hooks, driver start, wait, restart policy,
kill; mirrors client/allocrunner/taskrunner/task_runner.go.

    Pending ─▶ Prestart hooks ─▶ start (Started, running) ─▶ wait ─▶ Terminated
       ▲                                                                │
       └──── Restarting (pending, delay) ◀── RestartTracker ───────────┤
                                             Not Restarting / done ─▶ stop hooks ─▶ dead

This module holds the loop (`_lifecycle`) and its start; the rest of a runner is layered
beneath `TaskRunner`, one part a module:
- task_runner_getters.py: config, fields, getters, the state writer (`emit`, `_update`);
- task_runner_steps.py: running the loop in steps on the shared runner workers
  (workers.py), parking it where it would wait long (lifecycle gate, running task,
  restart delay) and resuming it when the wait ends;
- task_runner_hook_phases.py: each phase's hooks (prestart, poststart, exited, stop);
- lifecycle.py: kill, restart, signal and shutdown from other threads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator

from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import HookError
from nomadpaas.agent.client.allocrunner.taskrunner.lifecycle import TaskLifecycle
from nomadpaas.agent.client.allocrunner.taskrunner.restarts import (
    STATE_NOT_RESTARTING,
    STATE_RESTARTING,
)
from nomadpaas.agent.client.allocrunner.taskrunner.task_config import driver_task_config
from nomadpaas.agent.client.allocrunner.taskrunner.task_runner_getters import TaskRunnerConfig
from nomadpaas.agent.client.allocrunner.taskrunner.task_runner_steps import Life, Park
from nomadpaas.agent.drivers.base import DriverError, ExitResult, TaskConfig
from nomadpaas.agent.structs.alloc import (
    TASK_DRIVER_FAILURE,
    TASK_HOOK_FAILED,
    TASK_NOT_RESTARTING,
    TASK_RESTARTING,
    TASK_STARTED,
    TASK_STATE_PENDING,
    TASK_STATE_RUNNING,
    TASK_TERMINATED,
    new_task_event,
)
from nomadpaas.agent.structs.duration import NS_PER_S

__all__ = ["TaskRunner", "TaskRunnerConfig"]

log = logging.getLogger("nomadpaas.agent.client.taskrunner")

# After the exit watch fired, how long wait_task may take to read the recorded status.
EXIT_RECORD_WAIT_S = 1.0
TASK_RESTORE_FAILED = "Failed Restoring Task"
MSG_RESTORE_FAILED = "failed to restore task; will restart it"


class TaskRunner(TaskLifecycle):
    """One task of one allocation. `start()` submits the loop's first step."""

    # -- starting the loop ------------------------------------------------------------

    def start(self) -> None:
        """Start the loop (a dead restored task needs none)."""
        if self.claim():
            self.start_claimed()

    def claim(self) -> bool:
        """Promise that the loop will run (`start_claimed` or `run_claimed` follows); False
        when it must not (already claimed, or a dead restored task). From here on a kill
        leaves finishing the task to the loop."""
        with self._lock:
            if self._done.is_set() or self._claimed:
                return False
            self._claimed = True
            return True

    def release_claim(self) -> None:
        """Take back a claim whose loop never started (the allocation's setup failed)."""
        with self._lock:
            if self._life is None:
                self._claimed = False

    def start_claimed(self) -> None:
        """Start the claimed loop: its first step goes to the runner workers."""
        with self._lock:
            self._life = self._lifecycle()
        self._submit()

    def run_claimed(self) -> None:
        """Run the claimed loop's first step on the calling thread (a runner worker
        setting the allocation up), saving a hand-off."""
        with self._lock:
            self._life = self._lifecycle()
        self._step()

    # -- the loop ----------------------------------------------------------------------

    def _lifecycle(self) -> Life:
        restored_live = self._handle is not None and self._restore_handle()
        if not restored_live:
            while not self._wait_over(Park.GATE):
                yield Park.GATE
            if not self._gate_open or self._kill_requested or self._shutdown:
                if self._kill_requested:
                    self._finish()
                return
        while True:
            if not restored_live:
                if self._kill_requested:
                    break
                if not self._prestart_and_start():
                    if self._shutdown:
                        return
                    if not self._kill_requested and (yield from self._restart_or_stop()):
                        continue
                    break
            restored_live = False
            self._run_poststart()
            result = yield from self._wait()
            if result is None:
                return  # agent shutdown: leave the task running
            self._handle_exit(result)
            if self._kill_requested:
                break
            if not (yield from self._restart_or_stop()):
                break
        self._finish()

    def _restore_handle(self) -> bool:
        """Re-attach to a task that outlived the previous agent; False means start anew."""
        handle = self._handle
        assert handle is not None
        try:
            self._run_prestart(restoring=True)
            # Under the lock: a kill() arriving meanwhile waits, then stops a known task.
            with self._lock:
                self.cfg.driver.recover_task(handle)
                killed_before = self._kill_requested
        except (DriverError, HookError) as exc:
            log.warning("task %s: restore failed: %s", self.task_id, exc)
            with self._lock:
                self._handle = None
            self._update(
                TASK_STATE_PENDING,
                new_task_event(TASK_RESTORE_FAILED, now_ns=time.time_ns(),
                               Message=MSG_RESTORE_FAILED),
            )  # fmt: skip
            return False
        log.info("task %s: re-attached to running task", self.task_id)
        if killed_before:
            self._stop_driver(handle)  # the kill's own stop found no task to stop
        return True

    def _prestart_and_start(self) -> bool:
        """Prestart hooks then driver start; False (tracker told why) on failure."""
        try:
            env = self._run_prestart()
        except HookError as err:
            event = err.event or new_task_event(
                TASK_HOOK_FAILED, now_ns=time.time_ns(), Message=str(err)
            )
            self.emit(event)
            with self._lock:
                self._tracker.set_start_error(str(err), recoverable=err.recoverable)
            return False
        with self._wake:
            if self._kill_requested or self._shutdown:
                return False
            try:
                handle = self.cfg.driver.start_task(self._task_config(env))
            except (DriverError, OSError) as exc:
                self._tracker.set_start_error(str(exc), recoverable=False)
                start_error: str | None = str(exc)
            else:
                self._handle = handle
                start_error = None
        if start_error is not None:
            self.emit(new_task_event(TASK_DRIVER_FAILURE, now_ns=time.time_ns(),
                                     DriverError=start_error))  # fmt: skip
            return False
        self._update(TASK_STATE_RUNNING, new_task_event(TASK_STARTED, now_ns=time.time_ns()))
        return True

    def _wait(self) -> Generator[Park, None, ExitResult | None]:
        """The exit result, or None when the agent shuts down first. Parks until the
        driver's exit watch fires: nothing of ours polls or holds a thread while a task
        runs."""
        assert self._handle is not None
        task_id = self._handle.task_id
        driver = self.cfg.driver
        armed = False
        while True:
            if not armed:
                with self._wake:
                    self._exit_seen = False
                driver.watch_task(task_id, self._on_exit)
                armed = True
            if not self._wait_over(Park.EXIT):
                yield Park.EXIT
            with self._wake:
                if self._shutdown:
                    return None
                seen = self._exit_seen
            result = driver.wait_task(task_id, EXIT_RECORD_WAIT_S if seen else 0)
            if result is not None:
                return result
            armed = not seen  # woken early (or the wrapper is slow): watch again

    def _on_exit(self) -> None:
        with self._wake:
            self._exit_seen = True
            self._wake.notify_all()
        self._wake_up()

    def _handle_exit(self, result: ExitResult) -> None:
        with self._lock:
            handle, self._handle = self._handle, None
            if not self._kill_requested and not self._restart_requested:
                self._tracker.set_exit(result.exit_code if not result.err else -1)
            self._restart_requested = False
        if handle is not None:
            try:
                self.cfg.driver.destroy_task(handle.task_id, force=True)
            except DriverError as exc:
                log.warning("task %s: destroy after exit: %s", self.task_id, exc)
        self.emit(new_task_event(TASK_TERMINATED, now_ns=time.time_ns(),
                                 ExitCode=result.exit_code, Signal=result.signal,
                                 Message=result.err))  # fmt: skip
        self._run_exited()

    def _restart_or_stop(self) -> Generator[Park, None, bool]:
        """Ask the restart tracker; True means run again (after waiting out the delay,
        parked)."""
        with self._lock:
            decision = self._tracker.get_state(time.time_ns())
        if decision.state == STATE_RESTARTING:
            self._update(
                TASK_STATE_PENDING,
                new_task_event(TASK_RESTARTING, now_ns=time.time_ns(),
                               StartDelay=decision.delay_ns, RestartReason=decision.reason),
            )  # fmt: skip
            with self._wake:
                self._delay_deadline = time.monotonic() + decision.delay_ns / NS_PER_S
            while not self._wait_over(Park.DELAY):
                yield Park.DELAY
            return not (self._kill_requested or self._shutdown)
        if decision.state == STATE_NOT_RESTARTING:
            self.emit(new_task_event(TASK_NOT_RESTARTING, now_ns=time.time_ns(),
                                     RestartReason=decision.reason, FailsTask=True))  # fmt: skip
        return False

    def _task_config(self, env: dict[str, str]) -> TaskConfig:
        return driver_task_config(
            self.task_id, self.cfg.alloc, self.cfg.task, self.cfg.node, self.cfg.alloc_dir,
            self.task_dir, env,
        )  # fmt: skip
