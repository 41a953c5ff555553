"""An alloc runner's fields, getters and status reporting (`_push_update`); mirrors
the getters of client/allocrunner/alloc_runner.go (TaskStates, clientAlloc,
AllocState) and its TaskStateUpdated.

ClientStatus/ClientDescription follow from the task states and go to the client's
batched updater (urgent when ClientStatus changes). Every task state change pushes an
update, tells the task-state hooks, then asks the coordinator (alloc_runner_steps.py)
for a step.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from nomadpaas.agent.client.allocdir import AllocDir
from nomadpaas.agent.client.allocrunner.alloc_runner_hooks import (
    RunnerHook,
    build_runner_hooks,
)
from nomadpaas.agent.client.allocrunner.config import AllocRunnerConfig
from nomadpaas.agent.client.allocrunner.interfaces import (
    RunnerDestroyHook,
    RunnerPostrunHook,
    RunnerPreKillHook,
    RunnerPrerunHook,
    RunnerShutdownHook,
    RunnerTaskStateHook,
    RunnerUpdateHook,
)
from nomadpaas.agent.client.allocrunner.taskrunner.task_runner import (
    TaskRunner,
    TaskRunnerConfig,
)
from nomadpaas.agent.client.lib.protocols import split_hooks
from nomadpaas.agent.structs.alloc import client_status_from_task_states

if TYPE_CHECKING:  # the layer on top, for the extra hooks' argument; a cycle only for mypy
    from nomadpaas.agent.client.allocrunner.alloc_runner import AllocRunner


def _phases(
    hooks: list[RunnerHook],
) -> tuple[
    list[RunnerPrerunHook],
    list[RunnerPreKillHook],
    list[RunnerDestroyHook],
    list[RunnerUpdateHook],
    list[RunnerTaskStateHook],
    list[RunnerPostrunHook],
    list[RunnerShutdownHook],
]:
    """The hooks of each phase, in the order `AllocRunner.__init__` unpacks them."""
    prerun, prekill, destroy, update, task_state, postrun, shutdown = split_hooks(
        hooks,
        RunnerPrerunHook,
        RunnerPreKillHook,
        RunnerDestroyHook,
        RunnerUpdateHook,
        RunnerTaskStateHook,
        RunnerPostrunHook,
        RunnerShutdownHook,
    )
    return prerun, prekill, destroy, update, task_state, postrun, shutdown


def group_of(alloc: Mapping[str, Any]) -> dict[str, Any]:
    for group in (alloc.get("Job") or {}).get("TaskGroups") or []:
        if group.get("Name") == alloc.get("TaskGroup"):
            return dict(group)
    return {}


class AllocRunnerBase:
    """An alloc runner's state: its config, task runners, hooks and flags."""

    def __init__(self, cfg: AllocRunnerConfig) -> None:
        self.cfg = cfg
        self.alloc = cfg.alloc
        self.id = str(cfg.alloc["ID"])
        self.alloc_dir = AllocDir(cfg.data_dir, self.id)
        self._hooks: list[RunnerHook] = build_runner_hooks(
            # Only an AllocRunner is ever built: the hooks get the whole runner.
            cfg.extra_hooks(cast("AllocRunner", self)) if cfg.extra_hooks else None
        )
        self._deployment_status: dict[str, Any] | None = None
        # One condition guards the flags below and serves every wait (setup done, all
        # done, a step in progress): Events would cost a Condition and a lock each, per
        # allocation, on the client's watch thread.
        self._cond = threading.Condition(threading.Lock())
        self._update_lock = threading.Lock()  # one status computation + push at a time
        self._stop_requested = False
        self._killing = False
        self._shutdown = False
        self._destroyed = False
        self._last_status: tuple[str, str] | None = None
        self._started = False  # run() was called
        self._set_up = False  # the alloc thread persisted it and ran the prerun hooks
        self._setup_done = False  # set up, or gave up trying
        self._persist_lock = threading.Lock()  # put_alloc/delete_alloc in call order
        self._stepping_thread: threading.Thread | None = None
        self._stepping = False  # a thread is running coordination steps
        self._dirty = False  # another step was asked for meanwhile
        self._own_kill = False  # a kill started by a step is running
        self._finished = False  # postrun done: no more steps
        # Each phase's hooks, picked once per sequence of hook classes (protocols.py).
        (
            self._prerun_hooks,
            self._prekill_hooks,
            self._destroy_hooks,
            self._update_hooks,
            self._task_state_hooks,
            self._postrun_hooks,
            self._shutdown_hooks,
        ) = _phases(self._hooks)
        restored_tasks = cfg.restored.tasks if cfg.restored else {}
        self.tasks: dict[str, TaskRunner] = {}
        for task in group_of(cfg.alloc).get("Tasks") or []:
            name = str(task["Name"])
            tracker = cfg.tracker_factory(cfg.alloc, task) if cfg.tracker_factory else None
            self.tasks[name] = TaskRunner(
                TaskRunnerConfig(
                    alloc=cfg.alloc, task=task, alloc_dir=self.alloc_dir, driver=cfg.driver,
                    state_db=cfg.state_db, node=cfg.node, hooks=cfg.task_hooks(),
                    on_state_change=self._task_state_updated,
                    max_kill_timeout_ns=cfg.max_kill_timeout_ns, host_env=cfg.host_env,
                    restored=restored_tasks.get(name), tracker=tracker, pool=cfg.pool,
                )
            )  # fmt: skip

    # -- queries ----------------------------------------------------------------------

    def task_states(self) -> dict[str, Any]:
        return {name: tr.task_state() for name, tr in self.tasks.items()}

    def client_status(self) -> tuple[str, str]:
        return client_status_from_task_states(self.task_states())

    def is_done(self) -> bool:
        return all(tr.is_dead() for tr in self.tasks.values())

    def wait_done(self, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._finished, timeout_s)

    def _persist_alloc(self, *, durable: bool = True) -> None:
        """Save the current version, unless the allocation was destroyed meanwhile."""
        with self._persist_lock:
            if not self._destroyed:
                self.cfg.state_db.put_alloc(self.alloc, durable=durable)

    def set_deployment_status(self, status: dict[str, Any]) -> None:
        """The health hook's verdict (`{"Healthy": bool, "Timestamp": ...}`): sent to the
        server with the next update, at once."""
        with self._update_lock:
            self._deployment_status = dict(status)
            self._last_status = None  # makes the next push urgent
        self._push_update()

    def _task_state_updated(self, name: str) -> None:
        """Every task state change: push the update now, tell the task-state hooks, then
        let the coordinator act."""
        self._publish_task_states()
        self._kick()

    def _publish_task_states(self) -> None:
        """Push the task states to the server and tell the task-state hooks."""
        states = self._push_update()
        for hook in self._task_state_hooks:
            hook.task_states_updated(self.alloc, states)

    def _push_update(self) -> dict[str, Any]:
        """Send ClientStatus/TaskStates (and any DeploymentStatus); returns the states."""
        with self._update_lock:
            states = self.task_states()
            status = client_status_from_task_states(states)
            urgent = status != self._last_status
            self._last_status = status
            update = {
                "ID": self.id,
                "ClientStatus": status[0],
                "ClientDescription": status[1],
                "TaskStates": states,
            }
            if self._deployment_status is not None:
                update["DeploymentStatus"] = dict(self._deployment_status)
            self.cfg.updater(update, urgent)
        return states

    def _kick(self) -> None:
        """Run coordination steps (the coordinator implements it)."""
        raise NotImplementedError
