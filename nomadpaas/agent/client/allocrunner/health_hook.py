"""Watches a deployment's allocation until it is healthy or unhealthy and reports it to the
server; mirrors client/allocrunner/health_hook.go.

Feeds the pure tracker (client/allochealth/tracker.py) from the alloc runner's task state
changes and the service registry's check changes, on one small thread per tracked
allocation that sleeps until the tracker's next timer. The verdict goes out once, through
the runner's normal update path: `DeploymentStatus{Healthy, Timestamp}` (the server owns
`Canary` and `ModifyIndex`); an unhealthy verdict first adds `Alloc Unhealthy` task events.

Tracked only: service/system jobs, allocations of a deployment whose group has an
`Update` block (MaxParallel > 0) with `HealthCheck` other than `manual`, and health not
yet set. An in-place update that moves the allocation into a new deployment starts over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from nomadpaas.agent.client.allocdir import AllocDir
from nomadpaas.agent.client.allochealth.tracker import (
    HEALTH_CHECK_CHECKS,
    HEALTH_CHECK_MANUAL,
    ChecksView,
    Tracker,
    Verdict,
    desired_checks,
    task_infos,
)
from nomadpaas.agent.structs.alloc import (
    TASK_ALLOC_UNHEALTHY,
    client_status_from_task_states,
    new_task_event,
    ns_to_rfc3339,
    server_terminal,
)
from nomadpaas.agent.structs.duration import NS_PER_S

log = logging.getLogger("nomadpaas.agent.client.allocrunner")

TRACKED_JOB_TYPES = ("service", "system")
MAX_SLEEP_S = 5.0  # a safety net: the thread wakes on every input change anyway
_COND_LOCK = threading.Lock()  # guards the lazy creation of each hook's condition


class TaskEventSink(Protocol):
    def emit(self, event: dict[str, Any]) -> None: ...


class HealthSetter(Protocol):
    """The part of the alloc runner this hook needs (Nomad's healthSetter)."""

    @property
    def tasks(self) -> Mapping[str, TaskEventSink]: ...

    def task_states(self) -> dict[str, Any]: ...

    def set_deployment_status(self, status: dict[str, Any]) -> None: ...


class CheckStates(Protocol):
    """The service registry's answer for one allocation (serviceregistration.registry)."""

    @property
    def total(self) -> int: ...

    @property
    def healthy(self) -> bool: ...


class ChecksSource(Protocol):
    def alloc_checks(self, alloc_id: str) -> CheckStates: ...

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]: ...


def _group(alloc: Mapping[str, Any]) -> Mapping[str, Any]:
    for group in (alloc.get("Job") or {}).get("TaskGroups") or []:
        if group.get("Name") == alloc.get("TaskGroup"):
            return dict(group)
    return {}


def should_track(alloc: Mapping[str, Any]) -> bool:
    """Whether this allocation's health matters to a deployment (see module docstring)."""
    if server_terminal(dict(alloc)) or not alloc.get("DeploymentID"):
        return False
    if (alloc.get("Job") or {}).get("Type") not in TRACKED_JOB_TYPES:
        return False
    if (alloc.get("DeploymentStatus") or {}).get("Healthy") is not None:
        return False
    update = _group(alloc).get("Update") or {}
    return bool(update.get("MaxParallel")) and update.get("HealthCheck") != HEALTH_CHECK_MANUAL


class HealthHook:
    """prerun: start watching; task_states_updated / check changes: feed the tracker;
    update: restart on a new deployment; prekill, postrun, destroy, shutdown: stop."""

    name = "alloc_health"

    def __init__(self, runner: HealthSetter, checks: ChecksSource | None = None) -> None:
        self.runner = runner
        self.checks = checks
        # Made on first use (`_cond`): most allocations are never tracked, and every one
        # builds this hook on the client's watch thread.
        self._cond_obj: threading.Condition | None = None
        self._tracker: Tracker | None = None
        self._alloc_id = ""
        self._deployment_id = ""
        self._generation = 0  # bumps on every (re)start; a stale thread sees it and exits
        self._checks_dirty = False
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def _cond(self) -> threading.Condition:
        cond = self._cond_obj
        if cond is None:
            with _COND_LOCK:
                cond = self._cond_obj
                if cond is None:
                    cond = self._cond_obj = threading.Condition()
        return cond

    # -- runner hook phases -----------------------------------------------------------

    def prerun(self, alloc: Mapping[str, Any], alloc_dir: AllocDir) -> None:
        self._start(alloc)

    def update(self, alloc: Mapping[str, Any]) -> None:
        deployment_id = str(alloc.get("DeploymentID") or "")
        if server_terminal(dict(alloc)):
            self._stop()
        elif deployment_id and deployment_id != self._deployment_id:
            # In-place update into a new deployment: judge again. The runner resends its
            # last DeploymentStatus with every update, so first replace the old verdict
            # with an empty one (the server ignores a status without `Healthy`).
            if self._deployment_id:
                self.runner.set_deployment_status({})
            self._start(alloc)

    def task_states_updated(self, alloc: Mapping[str, Any], states: dict[str, Any]) -> None:
        if self._tracker is None:
            return  # as below, without the lock: untracked allocations are the common case
        with self._cond:
            if self._tracker is None:
                return
            status = client_status_from_task_states(states)[0]
            self._tracker.set_task_states(states, status, time.time_ns())
            self._cond.notify_all()

    def prekill(self, alloc: Mapping[str, Any]) -> None:
        self._stop()

    def postrun(self, alloc: Mapping[str, Any]) -> None:
        # Dead tasks already produced a verdict through task_states_updated; give the
        # thread one last look before it is told to stop.
        if self._cond_obj is None:
            return  # never tracked: no thread to wake
        with self._cond:
            self._cond.notify_all()

    def destroy(self, alloc: Mapping[str, Any], alloc_dir: AllocDir) -> None:
        self._stop()

    def shutdown(self) -> None:
        self._stop()

    # -- watching ---------------------------------------------------------------------

    def _start(self, alloc: Mapping[str, Any]) -> None:
        self._stop()
        self._deployment_id = str(alloc.get("DeploymentID") or "")
        if not should_track(alloc):
            return
        group = _group(alloc)
        update = group.get("Update") or {}
        now = time.time_ns()
        tracker = Tracker(
            task_infos(group),
            min_healthy_time_ns=int(update.get("MinHealthyTime") or 0),
            healthy_deadline_ns=int(update.get("HealthyDeadline") or 0),
            use_checks=(update.get("HealthCheck") or HEALTH_CHECK_CHECKS) == HEALTH_CHECK_CHECKS,
            desired_checks=desired_checks(group),
            start_ns=now,
        )
        states = self.runner.task_states()
        tracker.set_task_states(states, client_status_from_task_states(states)[0], now)
        with self._cond:
            self._generation += 1
            generation = self._generation
            self._tracker = tracker
            self._alloc_id = str(alloc.get("ID") or "")
            self._checks_dirty = self.checks is not None
        if self.checks is not None:
            self._unsubscribe = self.checks.subscribe(self._on_checks)
        threading.Thread(
            target=self._watch,
            args=(generation,),
            name=f"health-{self._alloc_id[:8]}",
            daemon=True,
        ).start()

    def _stop(self, generation: int | None = None) -> None:
        """Stop watching; with `generation`, only if no restart happened since."""
        if self._cond_obj is None:
            return  # never started: no tracker, thread or subscription to end
        with self._cond:
            if generation is not None and generation != self._generation:
                return
            self._generation += 1
            self._tracker = None
            self._cond.notify_all()
            unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    def _on_checks(self, index: int) -> None:
        with self._cond:
            self._checks_dirty = True
            self._cond.notify_all()

    def _watch(self, generation: int) -> None:
        verdict: Verdict | None = None
        try:
            while verdict is None:
                with self._cond:
                    tracker = self._tracker
                    if generation != self._generation or tracker is None:
                        return
                    dirty, self._checks_dirty = self._checks_dirty, False
                if dirty and self.checks is not None:
                    view = self.checks.alloc_checks(self._alloc_id)
                    with self._cond:
                        tracker.set_checks(ChecksView(view.total, view.healthy), time.time_ns())
                with self._cond:
                    if generation != self._generation:
                        return
                    now = time.time_ns()
                    verdict = tracker.poll(now)
                    if verdict is None and not self._checks_dirty:
                        wake = tracker.next_wakeup_ns()
                        wait_s = MAX_SLEEP_S if wake is None else (wake - now) / NS_PER_S
                        self._cond.wait(min(max(wait_s, 0.0), MAX_SLEEP_S))
            self._report(verdict, generation)
        except Exception:
            log.exception("alloc %s: health watcher crashed", self._alloc_id)

    def _report(self, verdict: Verdict, generation: int) -> None:
        # Held throughout, so an in-place update cannot slip a new deployment in between
        # the check and the report. The lock is reentrant: emitting an event calls back
        # into task_states_updated on this thread; the runner never calls us while it
        # holds its own update lock, so the order cond → update lock is safe.
        with self._cond:
            if generation != self._generation:
                return
            for task, message in sorted(verdict.events.items()):
                sink = self.runner.tasks.get(task)
                if sink is not None:
                    event = new_task_event(
                        TASK_ALLOC_UNHEALTHY, now_ns=verdict.at_ns, Message=message
                    )
                    sink.emit(event)
            log.info("alloc %s: healthy=%s", self._alloc_id, verdict.healthy)
            self.runner.set_deployment_status(
                {"Healthy": verdict.healthy, "Timestamp": ns_to_rfc3339(verdict.at_ns)}
            )
        self._stop(generation)  # the verdict is final for this deployment
