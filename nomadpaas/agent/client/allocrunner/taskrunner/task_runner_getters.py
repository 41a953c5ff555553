"""A task runner's fields, getters and its one state writer (`emit`, `_update`); mirrors
client/allocrunner/taskrunner/task_runner_getters.go and TaskRunner.UpdateState /
EmitEvent of task_runner.go.

Every state change is persisted (client/state.py) before the alloc runner hears of it;
the write that records a started task's handle is durable before it returns.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nomadpaas.agent.client.allocdir import AllocDir
from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import (
    TaskExitedHook,
    TaskHook,
    TaskPoststartHook,
    TaskPreKillHook,
    TaskPrestartHook,
    TaskStopHook,
)
from nomadpaas.agent.client.allocrunner.taskrunner.restarts import RestartTracker
from nomadpaas.agent.client.allocrunner.taskrunner.task_config import (
    DEFAULT_MAX_KILL_TIMEOUT_NS,
)
from nomadpaas.agent.client.allocrunner.taskrunner.task_state import apply_task_update, copy_state
from nomadpaas.agent.client.allocrunner.workers import SHARED_POOL, RunnerPool
from nomadpaas.agent.client.lib.protocols import split_hooks
from nomadpaas.agent.client.state import ClientStateDB, LocalTaskState
from nomadpaas.agent.drivers.base import Driver, TaskHandle
from nomadpaas.agent.structs.alloc import TASK_STATE_DEAD, TASK_STATE_RUNNING, new_task_state

log = logging.getLogger("nomadpaas.agent.client.taskrunner")


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


class TaskRunnerBase:
    """What every part of a task runner shares: config, state, flags and the lock."""

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
        # Each phase's hooks, picked once, all phases in one go (protocols.py).
        self._prestart_hooks: list[TaskPrestartHook]
        self._poststart_hooks: list[TaskPoststartHook]
        self._prekill_hooks: list[TaskPreKillHook]
        self._exited_hooks: list[TaskExitedHook]
        self._stop_hooks: list[TaskStopHook]
        (
            self._prestart_hooks,
            self._poststart_hooks,
            self._prekill_hooks,
            self._exited_hooks,
            self._stop_hooks,
        ) = split_hooks(
            cfg.hooks,
            TaskPrestartHook,
            TaskPoststartHook,
            TaskPreKillHook,
            TaskExitedHook,
            TaskStopHook,
        )
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

    def update_alloc(self, alloc: dict[str, Any]) -> None:
        self.cfg.alloc = alloc

    # -- the state writer -------------------------------------------------------------

    def emit(self, event: dict[str, Any]) -> None:
        self._update(None, event)

    def record(self, event: dict[str, Any]) -> None:
        """Append `event` without persisting it or telling the alloc runner: for events
        an update follows at once (the alloc runner's `Received`, pushed with its set-up;
        the task dir's `Task Setup`); the next write of this task's state carries it."""
        with self._lock:
            apply_task_update(self._state, None, event, time.time_ns())

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
            # before this runner acts on it; a mere event (`Received`, `Task Setup`) rides
            # along with the next commit. So does a start (state running, handle new):
            # nothing here acts on it, and the client flushes this DB before it tells the
            # server (Client._flush), so it is durable before anyone hears of it. The task
            # runs either way: a crash before the commit lands leaves it unrecorded
            # whether this thread waited for the commit or not (Nomad's window too).
            handle_changed = (local.handle is not None) != self._persisted_handle
            started = state == TASK_STATE_RUNNING and local.handle is not None
            durable = (state is not None or handle_changed) and not started
            self._persisted_handle = local.handle is not None
        try:
            self.cfg.state_db.put_task(self.alloc_id, self.name, local, durable=durable)
        except OSError as exc:
            log.warning("task %s: persisting state failed: %s", self.task_id, exc)
        if done:
            self._done.set()
        self.cfg.on_state_change(self.name)
