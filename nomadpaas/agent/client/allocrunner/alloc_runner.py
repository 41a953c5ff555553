"""Runs one allocation: its directory, its task runners in lifecycle order, its status
updates to the server, stop/restart/destroy; mirrors client/allocrunner/alloc_runner.go.

Nothing here holds a thread of its own: setting the allocation up is a step on the
shared runner workers (workers.py), and the task runners park while they wait.

This module holds the setup (`run`) and server updates (`update`); the rest of a runner
is layered beneath `AllocRunner`, one part a module:
- config.py: `AllocRunnerConfig`;
- alloc_runner_getters.py: fields, getters, status updates to the server;
- alloc_runner_lifecycle.py: restart, signal, kill, destroy and shutdown;
- alloc_runner_steps.py: the event-driven coordinator (gates, kills, postrun).

*kill* (the allocation must stop: tasks die) is kept apart from *shutdown* (the agent
exits: runner threads end, tasks keep running, state stays on disk for the next agent).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from nomadpaas.agent.client.allocrunner.alloc_runner_getters import group_of
from nomadpaas.agent.client.allocrunner.alloc_runner_lifecycle import (
    ERR_TASK_NOT_RUNNING,
    MSG_USER_RESTART,
    MSG_USER_RESTART_ALL,
    MSG_USER_RESTART_RUNNING,
    SHUTDOWN_JOIN_S,
    AllocRunnerError,
)
from nomadpaas.agent.client.allocrunner.alloc_runner_steps import SteppedAllocRunner
from nomadpaas.agent.client.allocrunner.config import AllocRunnerConfig
from nomadpaas.agent.client.allocrunner.taskrunner.task_runner import TaskRunner
from nomadpaas.agent.structs.alloc import TASK_RECEIVED, new_task_event, server_terminal

__all__ = [
    "ERR_TASK_NOT_RUNNING",
    "MSG_USER_RESTART",
    "MSG_USER_RESTART_ALL",
    "MSG_USER_RESTART_RUNNING",
    "SHUTDOWN_JOIN_S",
    "AllocRunner",
    "AllocRunnerConfig",
    "AllocRunnerError",
    "group_of",
]

log = logging.getLogger("nomadpaas.agent.client.allocrunner")


class AllocRunner(SteppedAllocRunner):
    """One allocation. `run()` queues its setup; the server's versions go to `update`."""

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
                    # Pushed below with the set-up; persisted with the task's next write.
                    tr.record(new_task_event(TASK_RECEIVED, now_ns=time.time_ns()))
            for hook in self._prerun_hooks:
                hook.prerun(self.alloc, self.alloc_dir)
            self._publish_task_states()  # with the tasks' `Received` (pending)
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
