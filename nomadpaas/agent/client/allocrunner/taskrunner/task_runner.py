"""Runs one task for its whole life: prestart hooks, driver start, wait, restart policy,
kill; mirrors client/allocrunner/taskrunner/task_runner.go.

    Pending ─▶ Prestart hooks ─▶ start (Started, running) ─▶ wait ─▶ Terminated
       ▲                                                                │
       └──── Restarting (pending, delay) ◀── RestartTracker ───────────┤
                                             Not Restarting / done ─▶ stop hooks ─▶ dead

The loop (`_lifecycle`) is a generator run in steps on the shared runner workers
(workers.py; Nomad: the task runner's goroutine). It *parks* wherever it would wait long:
for its lifecycle gate, while the task runs, during a restart delay. Parked, it holds no
thread; the event that ends the wait (the coordinator opening the gate, the driver's exit
watch, a timer, a kill or shutdown) submits its next step. Another thread may `kill`
(the task must die: `Killing` → driver stop → `Terminated` → `Killed`), `restart`
(`Restart Signaled`, not counted against the policy) or `shutdown` (the agent exits: the
loop ends, the task keeps running and its saved handle lets the next agent `recover_task`
it). Every state change is persisted (client/state.py) before the alloc runner hears of
it; the write that records a started task's handle is durable before it returns.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from nomadpaas.agent.client.allocdir import AllocDir
from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import (
    HookError,
    TaskExitedHook,
    TaskHook,
    TaskPoststartHook,
    TaskPreKillHook,
    TaskPrestartHook,
    TaskPrestartRequest,
    TaskStopHook,
    TaskStopRequest,
)
from nomadpaas.agent.client.allocrunner.taskrunner.restarts import (
    STATE_NOT_RESTARTING,
    STATE_RESTARTING,
    RestartTracker,
)
from nomadpaas.agent.client.allocrunner.taskrunner.task_config import (
    DEFAULT_MAX_KILL_TIMEOUT_NS,
    driver_task_config,
    kill_timeout_ns,
    task_env,
)
from nomadpaas.agent.client.allocrunner.taskrunner.task_state import apply_task_update, copy_state
from nomadpaas.agent.client.allocrunner.workers import SHARED_POOL, RunnerPool
from nomadpaas.agent.client.lib.protocols import hooks_of
from nomadpaas.agent.client.state import ClientStateDB, LocalTaskState
from nomadpaas.agent.drivers.base import (
    Driver,
    DriverError,
    ExitResult,
    TaskConfig,
    TaskHandle,
)
from nomadpaas.agent.structs.alloc import (
    TASK_DRIVER_FAILURE,
    TASK_HOOK_FAILED,
    TASK_KILLED,
    TASK_NOT_RESTARTING,
    TASK_RESTARTING,
    TASK_STARTED,
    TASK_STATE_DEAD,
    TASK_STATE_PENDING,
    TASK_STATE_RUNNING,
    TASK_TERMINATED,
    TASK_WAITING_SHUTDOWN_DELAY,
    new_task_event,
    new_task_state,
)
from nomadpaas.agent.structs.duration import NS_PER_S

log = logging.getLogger("nomadpaas.agent.client.taskrunner")

SHUTDOWN_WAIT_S = 2.0  # how long shutdown(wait=True) waits for a running step to end
DELAY_SLACK_S = 0.001  # a restart delay's timer fires this much late rather than early
# After the exit watch fired, how long wait_task may take to read the recorded status.
EXIT_RECORD_WAIT_S = 1.0
# A kill waits this long beyond KillTimeout for the run loop to reach `dead`.
KILL_GRACE_S = 20.0
TASK_RESTORE_FAILED = "Failed Restoring Task"
MSG_RESTORE_FAILED = "failed to restore task; will restart it"


@dataclass
class TaskRunnerConfig:
    alloc: dict[str, Any]
    task: dict[str, Any]
    alloc_dir: AllocDir
    driver: Driver
    state_db: ClientStateDB
    node: Mapping[str, Any]
    hooks: list[TaskHook]
    on_state_change: Callable[[str], None] = lambda name: None
    max_kill_timeout_ns: int = DEFAULT_MAX_KILL_TIMEOUT_NS
    host_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    restored: LocalTaskState | None = None
    tracker: RestartTracker | None = None  # tests pin the jitter with their own
    pool: RunnerPool = field(default_factory=lambda: SHARED_POOL)


class _Park(enum.Enum):
    """What a parked loop waits for."""

    GATE = "gate"  # the coordinator to open the lifecycle gate
    EXIT = "exit"  # the driver's exit watch
    DELAY = "delay"  # a restart delay to pass


Life = Generator[_Park, None, None]


class TaskRunner:
    """One task of one allocation. `start()` launches the loop thread."""

    def __init__(self, cfg: TaskRunnerConfig) -> None:
        self.cfg = cfg
        self.name = str(cfg.task["Name"])
        self.alloc_id = str(cfg.alloc["ID"])
        self.task_id = f"{self.alloc_id}/{self.name}"  # the driver's key for this task
        self.task_dir = cfg.alloc_dir.task_dir(self.name)
        job = cfg.alloc.get("Job") or {}
        self.lifecycle: dict[str, Any] | None = cfg.task.get("Lifecycle") or None
        self.leader = bool(cfg.task.get("Leader"))
        self._tracker = cfg.tracker or RestartTracker(
            policy=dict(cfg.task.get("RestartPolicy") or {}),
            job_type=str(job.get("Type") or "service"),
            start_ns=time.time_ns(),
            lifecycle=self.lifecycle,
        )
        restored = cfg.restored
        self._state: dict[str, Any] = (
            copy_state(restored.task_state) if restored else new_task_state()
        )
        self._handle: TaskHandle | None = (
            TaskHandle.from_dict(restored.handle) if restored and restored.handle else None
        )
        self._hooks_done: set[str] = set(restored.hooks_done) if restored else set()
        self._persisted_handle = self._handle is not None  # the saved state has a handle
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._gate_open = False
        self._kill_requested = False
        self._shutdown = False
        self._restart_requested = False
        self._exit_seen = False  # set by the driver's exit watch
        self._done = threading.Event()
        self._claimed = False  # someone will run the loop (start() or claim())
        self._life: Life | None = None  # the loop, once started
        self._life_over = False  # the loop returned (or crashed)
        self._parked: _Park | None = None  # what the parked loop waits for
        self._stepping: threading.Thread | None = None  # the thread running a step
        self._delay_deadline = 0.0  # monotonic end of a restart delay
        self._pool = cfg.pool
        # Each phase's hooks, picked once (runtime Protocol checks are slow).
        hooks = cfg.hooks
        self._prestart_hooks: list[TaskPrestartHook] = hooks_of(hooks, TaskPrestartHook)
        self._poststart_hooks: list[TaskPoststartHook] = hooks_of(hooks, TaskPoststartHook)
        self._prekill_hooks: list[TaskPreKillHook] = hooks_of(hooks, TaskPreKillHook)
        self._exited_hooks: list[TaskExitedHook] = hooks_of(hooks, TaskExitedHook)
        self._stop_hooks: list[TaskStopHook] = hooks_of(hooks, TaskStopHook)
        if self._state["State"] == TASK_STATE_DEAD:
            self._done.set()

    # -- queries ----------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """ "prestart", "poststart", "poststop" or "main"."""
        return str((self.lifecycle or {}).get("Hook") or "main")

    @property
    def sidecar(self) -> bool:
        return bool((self.lifecycle or {}).get("Sidecar"))

    def task_state(self) -> dict[str, Any]:
        with self._lock:
            return copy_state(self._state)

    def is_dead(self) -> bool:
        return self._done.is_set()

    def is_running(self) -> bool:
        with self._lock:
            return bool(self._state["State"] == TASK_STATE_RUNNING)

    def wait_done(self, timeout_s: float) -> bool:
        return self._done.wait(timeout_s)

    def main_pid(self) -> int | None:
        with self._lock:
            if self._handle is None:
                return None
            pid = self._handle.driver_state.get("PID")
            return int(pid) if pid else None

    # -- control (any thread) ---------------------------------------------------------

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

    def open_gate(self) -> None:
        """Let the task start: the alloc runner's lifecycle coordinator calls this."""
        with self._wake:
            self._gate_open = True
            self._wake.notify_all()
        self._wake_up()

    def emit(self, event: dict[str, Any]) -> None:
        self._update(None, event)

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
        for hook in self._prekill_hooks:
            hook.prekill(self.cfg.alloc, self.cfg.task)
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

    def update_alloc(self, alloc: dict[str, Any]) -> None:
        self.cfg.alloc = alloc

    # -- the loop, in steps -----------------------------------------------------------

    def _submit(self) -> None:
        """Queue the loop's next step; a start that downloads artifacts may take minutes,
        so it gets a thread of its own instead of a shared worker."""
        if self.cfg.task.get("Artifacts") and "artifacts" not in self._hooks_done:
            self._pool.run_blocking(self._step, f"task-{self.name}-{self.alloc_id[:8]}")
        else:
            self._pool.submit(self._step)

    def _step(self) -> None:
        """Run the loop until it parks or ends."""
        life = self._life
        assert life is not None
        with self._lock:
            self._stepping = threading.current_thread()
        park: _Park | None = None
        try:
            park = next(life)
        except StopIteration:
            pass
        except Exception as exc:  # a bug must not leave the task "running" forever
            self._crashed(exc)
        resume = False
        with self._wake:
            self._stepping = None
            if park is None:
                self._life_over = True
            else:
                self._parked = park
                resume = self._wait_over(park)  # the event came while we were busy
                if resume:
                    self._parked = None
            self._wake.notify_all()
        if resume:
            self._submit()
        elif park is _Park.DELAY:
            self._arm_delay_timer()

    def _arm_delay_timer(self) -> None:
        """Wake the parked loop when its restart delay ends (a kill or shutdown may wake
        it sooner); a timer that fires a hair early arms another."""

        def fired() -> None:
            with self._wake:
                early = self._parked is _Park.DELAY and not self._wait_over(_Park.DELAY)
            if early:
                self._arm_delay_timer()
            else:
                self._wake_up()

        left = max(0.0, self._delay_deadline - time.monotonic())
        timer = threading.Timer(left + DELAY_SLACK_S, fired)
        timer.daemon = True
        timer.start()

    def _wait_over(self, park: _Park) -> bool:
        """Whether what `park` waits for happened (lock held)."""
        if park is _Park.GATE:
            return self._gate_open or self._kill_requested or self._shutdown
        if park is _Park.EXIT:
            return self._exit_seen or self._shutdown
        return self._kill_requested or self._shutdown or time.monotonic() >= self._delay_deadline

    def _wake_up(self) -> None:
        """Resume a parked loop whose wait is over (from any thread; spurious calls are
        harmless: the loop re-checks and parks again)."""
        with self._wake:
            park = self._parked
            if park is None or not self._wait_over(park):
                return
            self._parked = None
        self._submit()

    def _crashed(self, exc: Exception) -> None:
        log.exception("task runner %s crashed", self.task_id, exc_info=exc)
        if not self._shutdown:
            message = f"task runner: {exc}"
            event = new_task_event(
                TASK_HOOK_FAILED, now_ns=time.time_ns(), Message=message, FailsTask=True
            )
            self.emit(event)
            self._finish()

    def _lifecycle(self) -> Life:
        restored_live = self._handle is not None and self._restore_handle()
        if not restored_live:
            while not self._wait_over(_Park.GATE):
                yield _Park.GATE
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
            for hook in self._poststart_hooks:
                hook.poststart(self.cfg.alloc, self.cfg.task)
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

    def _run_prestart(self, *, restoring: bool = False) -> dict[str, str]:
        """Run the prestart hooks not done yet; returns the task environment."""
        env = self._task_env()
        for hook in self._prestart_hooks:
            if hook.name in self._hooks_done:
                continue
            req = TaskPrestartRequest(
                alloc=self.cfg.alloc, task=self.cfg.task, alloc_dir=self.cfg.alloc_dir,
                task_dir=self.task_dir, env=env, emit=self.emit, restoring=restoring,
            )  # fmt: skip
            try:
                resp = hook.prestart(req)
            except HookError:
                raise
            except Exception as exc:
                raise HookError(f"{hook.name}: {exc}", None, recoverable=True) from exc
            if resp.done:
                with self._lock:
                    self._hooks_done.add(hook.name)
        return env

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

    def _wait(self) -> Generator[_Park, None, ExitResult | None]:
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
            if not self._wait_over(_Park.EXIT):
                yield _Park.EXIT
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
        for hook in self._exited_hooks:
            hook.exited(self.cfg.alloc, self.cfg.task)

    def _restart_or_stop(self) -> Generator[_Park, None, bool]:
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
            while not self._wait_over(_Park.DELAY):
                yield _Park.DELAY
            return not (self._kill_requested or self._shutdown)
        if decision.state == STATE_NOT_RESTARTING:
            self.emit(new_task_event(TASK_NOT_RESTARTING, now_ns=time.time_ns(),
                                     RestartReason=decision.reason, FailsTask=True))  # fmt: skip
        return False

    def _finish(self) -> None:
        """The task is dead for good: `Killed` (after a kill), stop hooks, state dead."""
        if self._shutdown and not self._kill_requested:
            return
        req = TaskStopRequest(alloc=self.cfg.alloc, task=self.cfg.task, task_dir=self.task_dir)
        for hook in self._stop_hooks:
            try:
                hook.stop(req)
            except Exception:
                log.exception("task %s: stop hook %s failed", self.task_id, hook.name)
        event = new_task_event(TASK_KILLED, now_ns=time.time_ns()) if self._kill_requested else None
        # `dead` is final: is_dead() holds before the alloc runner hears of it, so its
        # (event-driven) coordinator sees the allocation done on this very update.
        self._update(TASK_STATE_DEAD, event, done=True)

    def _finish_unstarted(self) -> None:
        """Killed before the loop thread ever ran (e.g. the alloc stopped while pending)."""
        if not self._done.is_set():
            self._finish()

    # -- helpers ----------------------------------------------------------------------

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

    def _task_env(self) -> dict[str, str]:
        return task_env(
            self.cfg.alloc, self.cfg.task, self.cfg.node, self.cfg.alloc_dir, self.cfg.host_env
        )

    def _task_config(self, env: dict[str, str]) -> TaskConfig:
        return driver_task_config(
            self.task_id, self.cfg.alloc, self.cfg.task, self.cfg.node, self.cfg.alloc_dir,
            self.task_dir, env,
        )  # fmt: skip

    def _update(
        self, state: str | None, event: dict[str, Any] | None, *, done: bool = False
    ) -> None:
        """Append `event`, move to `state`, persist, then tell the alloc runner (with
        `done`, the task is marked dead for good in between)."""
        with self._lock:
            apply_task_update(self._state, state, event, time.time_ns())
            local = LocalTaskState(
                task_state=copy_state(self._state),
                handle=self._handle.to_dict() if self._handle is not None else None,
                hooks_done=sorted(self._hooks_done),
            )
            # What a restarted agent acts on (a state, a handle come or gone) is durable
            # before anyone hears of it; a mere event (`Received`, `Task Setup`) rides
            # along with the next commit, at the latest the one recording the handle.
            durable = state is not None or (local.handle is not None) != self._persisted_handle
            self._persisted_handle = local.handle is not None
        try:
            self.cfg.state_db.put_task(self.alloc_id, self.name, local, durable=durable)
        except OSError as exc:
            log.warning("task %s: persisting state failed: %s", self.task_id, exc)
        if done:
            self._done.set()
        self.cfg.on_state_change(self.name)
