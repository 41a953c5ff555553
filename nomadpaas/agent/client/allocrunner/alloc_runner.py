"""Runs one allocation: its directory, its task runners in lifecycle order, its status
updates to the server, stop/restart/destroy; mirrors client/allocrunner/alloc_runner.go.

Nothing here holds a thread of its own: setting the allocation up is a step on the
shared runner workers (workers.py), and the task runners park while they wait.
The coordinator is event driven, not a thread: every task state change, server update or
finished kill runs one coordination step (on the thread that caused it; a step arriving
while another runs is folded into it). A step opens the lifecycle gates
(task_hook_coordinator.py), decides to kill the live tasks when a task failed, the leader
died or only sidecars are left, and starts the kill sequence when the server sets
DesiredStatus stop/evict; kills block, so they run on a thread of their own. While a kill
of ours runs no gate opens (as when Nomad's coordinator waits for the kill).
ClientStatus/ClientDescription follow from the task states and go to the client's
batched updater (urgent when ClientStatus changes).

*kill* (the allocation must stop: tasks die) is kept apart from *shutdown* (the agent
exits: runner threads end, tasks keep running, state stays on disk for the next agent).
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
from nomadpaas.agent.client.allocrunner.alloc_runner_hooks import (
    GroupShutdownDelayHook,
    RunnerHook,
    build_runner_hooks,
)
from nomadpaas.agent.client.allocrunner.interfaces import (
    AllocUpdater,
    RunnerDestroyHook,
    RunnerPostrunHook,
    RunnerPreKillHook,
    RunnerPrerunHook,
    RunnerShutdownHook,
    RunnerTaskStateHook,
    RunnerUpdateHook,
)
from nomadpaas.agent.client.allocrunner.task_hook_coordinator import (
    TaskView,
    kill_event_type,
    startable,
)
from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import TaskHook
from nomadpaas.agent.client.allocrunner.taskrunner.restarts import RestartTracker
from nomadpaas.agent.client.allocrunner.taskrunner.task_config import (
    DEFAULT_MAX_KILL_TIMEOUT_NS,
    killing_event,
)
from nomadpaas.agent.client.allocrunner.taskrunner.task_runner import (
    TaskRunner,
    TaskRunnerConfig,
)
from nomadpaas.agent.client.allocrunner.workers import SHARED_POOL, RunnerPool
from nomadpaas.agent.client.lib.protocols import split_hooks
from nomadpaas.agent.client.state import ClientStateDB, RestoredAlloc
from nomadpaas.agent.drivers.base import Driver
from nomadpaas.agent.structs.alloc import (
    TASK_RECEIVED,
    TASK_RESTART_SIGNAL,
    TASK_SIBLING_FAILED,
    client_status_from_task_states,
    new_task_event,
    server_terminal,
)

log = logging.getLogger("nomadpaas.agent.client.allocrunner")

SHUTDOWN_JOIN_S = 2.0  # how long shutdown waits for a running coordination step
# Restart Signaled reasons, verbatim from client/client.go RestartAllocation.
MSG_USER_RESTART = "User requested task to restart"
MSG_USER_RESTART_ALL = "User requested all tasks to restart"
MSG_USER_RESTART_RUNNING = "User requested running tasks to restart"
ERR_TASK_NOT_RUNNING = "Task not running"


class AllocRunnerError(Exception):
    """A request the allocation cannot serve (unknown task, task not running)."""


@dataclass
class AllocRunnerConfig:
    alloc: dict[str, Any]
    data_dir: str
    driver: Driver
    state_db: ClientStateDB
    node: Mapping[str, Any]
    updater: AllocUpdater
    task_hooks: Callable[[], list[TaskHook]]  # a fresh ordered hook list per task
    max_kill_timeout_ns: int = DEFAULT_MAX_KILL_TIMEOUT_NS
    host_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    restored: RestoredAlloc | None = None
    tracker_factory: Callable[[dict[str, Any], dict[str, Any]], RestartTracker] | None = None
    # Hooks of later issues (group services, health), built per runner.
    extra_hooks: Callable[[AllocRunner], list[RunnerHook]] | None = None
    pool: RunnerPool = field(default_factory=lambda: SHARED_POOL)


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


class AllocRunner:
    def __init__(self, cfg: AllocRunnerConfig) -> None:
        self.cfg = cfg
        self.alloc = cfg.alloc
        self.id = str(cfg.alloc["ID"])
        self.alloc_dir = AllocDir(cfg.data_dir, self.id)
        self._hooks: list[RunnerHook] = build_runner_hooks(
            cfg.extra_hooks(self) if cfg.extra_hooks else None
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

    # -- control ----------------------------------------------------------------------

    def run(self) -> None:
        """Queue the allocation's setup on the runner workers: it persists the allocation
        (`Received`), builds the alloc dir (prerun hooks), starts the other task runners
        and coordinates, then runs the first task's first step itself. Returns at once, so
        the client's watch loop hands out a thousand allocations without waiting on a disk
        (or a thread start) for each."""
        with self._cond:
            if self._started:
                return
            self._started = True
        claimed = [tr for tr in self.tasks.values() if tr.claim()]
        self.cfg.pool.submit(lambda: self._set_up_step(claimed))

    def _set_up_step(self, claimed: list[TaskRunner]) -> None:
        try:
            self._set_up_alloc(claimed[1:])
        except Exception:
            log.exception("alloc runner %s: setting up the allocation failed", self.id)
            for tr in claimed:
                tr.release_claim()  # never ran: a kill finishes it instead of waiting
            self._mark_setup_done()
            return
        if claimed:
            claimed[0].run_claimed()

    def _set_up_alloc(self, others: list[TaskRunner]) -> None:
        try:
            if self.cfg.restored is None:
                # Deferred: the task's first durable write (its state, its handle) carries it.
                self._persist_alloc(durable=False)
                for tr in self.tasks.values():
                    tr.emit(new_task_event(TASK_RECEIVED, now_ns=time.time_ns()))
            for hook in self._prerun_hooks:
                hook.prerun(self.alloc, self.alloc_dir)
            self._push_update()
            for tr in others:
                tr.start_claimed()
            with self._cond:
                self._set_up = True
        finally:
            self._mark_setup_done()
        self._kick()
        if server_terminal(self.alloc):
            self.update(self.alloc)

    def _mark_setup_done(self) -> None:
        with self._cond:
            self._setup_done = True
            self._cond.notify_all()

    def _persist_alloc(self, *, durable: bool = True) -> None:
        """Save the current version, unless the allocation was destroyed meanwhile."""
        with self._persist_lock:
            if not self._destroyed:
                self.cfg.state_db.put_alloc(self.alloc, durable=durable)

    def update(self, alloc: dict[str, Any]) -> None:
        """A newer version from the server: persist it; DesiredStatus stop/evict kills."""
        self.alloc = alloc
        self._persist_alloc()
        for tr in self.tasks.values():
            tr.update_alloc(alloc)
        for hook in self._update_hooks:
            hook.update(alloc)
        if server_terminal(alloc):
            with self._cond:
                self._stop_requested = True
            self._kick()

    def restart(self, task_name: str = "", all_tasks: bool = False) -> None:
        """`/v1/client/allocation/:id/restart`: `Restart Signaled`, not counted as a failure."""
        if task_name:
            if task_name not in self.tasks:
                raise AllocRunnerError(f"Could not find task runner for task: {task_name}")
            targets = [self.tasks[task_name]]
            reason = MSG_USER_RESTART
        else:
            targets = [tr for tr in self.tasks.values() if all_tasks or tr.is_running()]
            reason = MSG_USER_RESTART_ALL if all_tasks else MSG_USER_RESTART_RUNNING
        restarted = []
        for tr in targets:
            event = new_task_event(TASK_RESTART_SIGNAL, now_ns=time.time_ns(), RestartReason=reason)
            if tr.restart(event):
                restarted.append(tr.name)
        if task_name and not restarted:
            raise AllocRunnerError(ERR_TASK_NOT_RUNNING)

    def signal(self, task_name: str, sig: str) -> None:
        targets = [self.tasks[task_name]] if task_name in self.tasks else []
        if task_name and not targets:
            raise AllocRunnerError(f"Failed to signal task: {task_name}, err: task not found")
        for tr in targets or [tr for tr in self.tasks.values() if tr.is_running()]:
            tr.signal(sig)

    def kill(self, *, prekill: bool = True) -> None:
        """Kill every task (leader first) and wait for them to be dead; blocking."""
        with self._cond:
            if self._killing:
                return
            self._killing = True
        if prekill:
            for hook in self._prekill_hooks:
                hook.prekill(self.alloc)
        self._kill_tasks()

    def destroy(self) -> None:
        """The server forgot the allocation (GC): kill, remove the alloc dir and state."""
        if self._destroyed:
            return
        self.kill(prekill=False)
        self._kill_tasks(include_poststop=True)  # a poststop task may still wait its turn
        self._shutdown_threads()
        # The alloc thread may still be building the alloc dir (tasks that were dead
        # already do not wait for it): let it finish before removing the tree.
        with self._cond:
            self._cond.wait_for(lambda: self._setup_done, SHUTDOWN_JOIN_S)
        with self._persist_lock:
            self._destroyed = True
        for hook in self._destroy_hooks:
            hook.destroy(self.alloc, self.alloc_dir)
        with self._persist_lock:
            self.cfg.state_db.delete_alloc(self.id)

    def shutdown(self, *, wait: bool = True) -> None:
        """The agent exits: stop our threads, leave the tasks running. With `wait=False`
        only signal them (the client signals every runner first, then waits)."""
        for hook in self._hooks:
            if isinstance(hook, GroupShutdownDelayHook):
                hook.cancel_wait()
        if wait:
            for hook in self._shutdown_hooks:
                hook.shutdown()
        for tr in self.tasks.values():
            tr.shutdown(wait=wait)
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
        if wait:
            self._shutdown_threads()

    def _shutdown_threads(self) -> None:
        """No step starts from now on; wait (bounded) for one in progress elsewhere."""
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
            if self._stepping_thread is threading.current_thread():
                return
            self._cond.wait_for(lambda: not self._stepping, SHUTDOWN_JOIN_S)

    # -- coordination -----------------------------------------------------------------

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
        states = self._push_update()
        for hook in self._task_state_hooks:
            hook.task_states_updated(self.alloc, states)
        self._kick()

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

    def _views(self) -> list[TaskView]:
        return [
            TaskView(tr.name, tr.kind, tr.sidecar, tr.leader, tr.task_state())
            for tr in self.tasks.values()
        ]

    def _kick(self) -> None:
        """Run coordination steps until none is pending; a thread already stepping picks
        up this request instead (so a step that emits events does not recurse)."""
        with self._cond:
            self._dirty = True
            if self._stepping or not self._set_up:
                return
            self._stepping = True
            self._stepping_thread = threading.current_thread()
        try:
            while True:
                with self._cond:
                    if not self._dirty or self._shutdown or self._finished:
                        return
                    self._dirty = False
                self._step()
        except Exception:
            log.exception("alloc runner %s: coordinator crashed", self.id)
        finally:
            with self._cond:
                self._stepping = False
                self._stepping_thread = None
                self._cond.notify_all()

    def _step(self) -> None:
        with self._cond:
            stop = self._stop_requested and not self._killing
            busy = self._own_kill
        if stop:
            self._kill_async(prekill=True)
            return
        if busy:
            return  # the kill's end asks for the next step
        if self._coordinate():
            return
        if self.is_done():
            self._push_update()
            for hook in self._postrun_hooks:
                hook.postrun(self.alloc)
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _kill_async(self, *, prekill: bool) -> None:
        """`kill` on a thread of its own (it blocks for up to KillTimeout), then a step."""
        with self._cond:
            if self._own_kill:
                return
            self._own_kill = True

        def killer() -> None:
            try:
                self.kill(prekill=prekill)
            except Exception:
                log.exception("alloc runner %s: kill failed", self.id)
            finally:
                with self._cond:
                    self._own_kill = False
                self._kick()

        threading.Thread(target=killer, name=f"kill-{self.id[:8]}", daemon=True).start()

    def _coordinate(self) -> bool:
        """Open the gates that are due; True when a kill was started instead."""
        views = self._views()
        if not self._killing:
            decision = kill_event_type(views)
            if decision is not None:
                event_type, sibling = decision
                fields = {"FailedSibling": sibling} if event_type == TASK_SIBLING_FAILED else {}
                for tr in self.tasks.values():
                    if not tr.is_dead() and tr.kind != "poststop":
                        tr.emit(new_task_event(event_type, now_ns=time.time_ns(), **fields))
                self._kill_async(prekill=False)
                return True
        for name in startable(views):
            self.tasks[name].open_gate()
        return False

    def _kill_tasks(self, *, include_poststop: bool = False) -> None:
        """Leader first, then every other live task concurrently; poststop tasks are
        left to run after the others unless the allocation is being destroyed."""
        max_ns = self.cfg.max_kill_timeout_ns
        live = [
            tr
            for tr in self.tasks.values()
            if not tr.is_dead() and (include_poststop or tr.kind != "poststop")
        ]
        for tr in [t for t in live if t.leader]:
            tr.kill(killing_event(tr.cfg.task, max_ns))
        threads = [
            threading.Thread(target=tr.kill, args=(killing_event(tr.cfg.task, max_ns),),
                             name=f"kill-{tr.name}", daemon=True)
            for tr in live if not tr.leader
        ]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
