"""Decides whether an allocation is healthy for its deployment, from its task states and
(in `checks` mode) its service checks; mirrors client/allochealth/tracker.go.

Pure: every input carries the clock (`now_ns`), so tests drive it without threads.

    set_task_states / set_checks ──▶ timers ──▶ poll(now) ──▶ Verdict (once; sticky)

- **Unhealthy at once**: a task `Failed`, the alloc `failed`, or a main/sidecar task dead.
  Poststop tasks, and prestart/poststart tasks that ended successfully, are ignored.
- **Timer**: once every task that must run is running (and, in `checks` mode, every
  check passes), a `MinHealthyTime` timer starts; a restart (new `StartedAt`), a task
  back to `pending`, or a failing check resets it. Healthy when it fires.
- **Deadline**: the allocation must be healthy by start + `HealthyDeadline` (start = the
  alloc runner's start), else it is unhealthy with an `Alloc Unhealthy` reason per task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nomadpaas.agent.structs.alloc import (
    ALLOC_CLIENT_FAILED,
    TASK_STATE_DEAD,
    TASK_STATE_PENDING,
    TASK_STATE_RUNNING,
    rfc3339_to_ns,
)
from nomadpaas.agent.structs.duration import format_duration

HEALTH_CHECK_CHECKS = "checks"
HEALTH_CHECK_TASK_STATES = "task_states"
HEALTH_CHECK_MANUAL = "manual"

# `Alloc Unhealthy` reasons, verbatim from tracker.go taskHealthState.event.
REASON_FAILED_TASK = "Unhealthy because of failed task"
REASON_DEAD_TASK = "Unhealthy because of dead task"
REASON_SERVICES = "Services not healthy by deadline"


def reason_not_running(healthy_deadline_ns: int) -> str:
    return f"Task not running by healthy_deadline of {format_duration(healthy_deadline_ns)}"


def reason_not_running_long_enough(min_healthy_ns: int, healthy_deadline_ns: int) -> str:
    return (
        f"Task not running for min_healthy_time of {format_duration(min_healthy_ns)} "
        f"by healthy_deadline of {format_duration(healthy_deadline_ns)}"
    )


@dataclass(frozen=True)
class TaskInfo:
    """What the tracker needs to know about one task of the group."""

    name: str
    kind: str = "main"  # main | prestart | poststart | poststop
    sidecar: bool = False

    @property
    def must_run(self) -> bool:
        """Main tasks and sidecars must be running for the alloc to be healthy."""
        return self.kind == "main" or (self.sidecar and self.kind != "poststop")


@dataclass(frozen=True)
class ChecksView:
    """The alloc's checks right now: how many count, and whether all of them pass."""

    total: int
    healthy: bool


@dataclass(frozen=True)
class Verdict:
    """The tracker's one decision. `events` maps task → `Alloc Unhealthy` message."""

    healthy: bool
    at_ns: int
    events: Mapping[str, str] = field(default_factory=dict)


def task_infos(group: Mapping[str, Any]) -> list[TaskInfo]:
    out = []
    for task in group.get("Tasks") or []:
        lifecycle = task.get("Lifecycle") or {}
        kind = str(lifecycle.get("Hook") or "main") if lifecycle else "main"
        out.append(TaskInfo(str(task["Name"]), kind, bool(lifecycle.get("Sidecar"))))
    return out


def desired_checks(group: Mapping[str, Any]) -> int:
    """Checks defined on the group's and its tasks' services (readiness ones excluded)."""
    services = list(group.get("Services") or [])
    for task in group.get("Tasks") or []:
        services.extend(task.get("Services") or [])
    return sum(
        1
        for service in services
        for check in service.get("Checks") or []
        if (check.get("OnUpdate") or "") != "ignore"
    )


class Tracker:
    """One allocation's health; see the module docstring."""

    def __init__(
        self,
        tasks: Sequence[TaskInfo],
        *,
        min_healthy_time_ns: int,
        healthy_deadline_ns: int,
        use_checks: bool,
        desired_checks: int,
        start_ns: int,
    ) -> None:
        self.tasks = {t.name: t for t in tasks}
        self.min_healthy_ns = min_healthy_time_ns
        self.healthy_deadline_ns = healthy_deadline_ns
        self.require_checks = use_checks and desired_checks > 0
        self.deadline_ns = start_ns + healthy_deadline_ns
        self._states: dict[str, Any] = {}
        self._client_failed = False
        self._tasks_ok_since: int | None = None
        self._started_sig: tuple[int, ...] | None = None
        self._checks_ok_since: int | None = None
        self._verdict: Verdict | None = None

    # -- inputs -----------------------------------------------------------------------

    def set_task_states(self, states: Mapping[str, Any], client_status: str, now_ns: int) -> None:
        self._states = dict(states)
        self._client_failed = client_status == ALLOC_CLIENT_FAILED
        running = all(
            (self._states.get(name) or {}).get("State") == TASK_STATE_RUNNING
            for name, info in self.tasks.items()
            if info.must_run
        )
        if not running:
            self._tasks_ok_since = self._started_sig = None
            return
        sig = tuple(
            rfc3339_to_ns((self._states.get(n) or {}).get("StartedAt"))
            for n in sorted(self.tasks)
            if self.tasks[n].must_run
        )
        if sig != self._started_sig:  # first time all running, or a restart: reset
            self._started_sig = sig
            self._tasks_ok_since = now_ns

    def set_checks(self, view: ChecksView, now_ns: int) -> None:
        ok = view.total > 0 and view.healthy
        if not ok:
            self._checks_ok_since = None
        elif self._checks_ok_since is None:
            self._checks_ok_since = now_ns

    # -- decision ---------------------------------------------------------------------

    @property
    def verdict(self) -> Verdict | None:
        return self._verdict

    def healthy_at_ns(self) -> int | None:
        """When the timer fires, if it is running."""
        if self._tasks_ok_since is None:
            return None
        since = self._tasks_ok_since
        if self.require_checks:
            if self._checks_ok_since is None:
                return None
            since = max(since, self._checks_ok_since)
        return since + self.min_healthy_ns

    def next_wakeup_ns(self) -> int | None:
        if self._verdict is not None:
            return None
        at = self.healthy_at_ns()
        return self.deadline_ns if at is None else min(at, self.deadline_ns)

    def poll(self, now_ns: int) -> Verdict | None:
        """The verdict, once reached (it never changes afterwards)."""
        if self._verdict is not None:
            return self._verdict
        failed = self._failure_events()
        if failed:
            self._verdict = Verdict(False, now_ns, failed)
            return self._verdict
        at = self.healthy_at_ns()
        if at is not None and at <= now_ns and at <= self.deadline_ns:
            self._verdict = Verdict(True, now_ns)
        elif now_ns >= self.deadline_ns:
            self._verdict = Verdict(False, now_ns, self._deadline_events())
        return self._verdict

    def _failure_events(self) -> dict[str, str]:
        events: dict[str, str] = {}
        for name, info in self.tasks.items():
            ts = self._states.get(name) or {}
            if ts.get("Failed"):
                events[name] = REASON_FAILED_TASK
            elif ts.get("State") == TASK_STATE_DEAD and info.must_run:
                events[name] = REASON_DEAD_TASK
        if self._client_failed and not events:
            events = dict.fromkeys(self.tasks, REASON_FAILED_TASK)
        return events

    def _deadline_events(self) -> dict[str, str]:
        events: dict[str, str] = {}
        for name, info in self.tasks.items():
            ts = self._states.get(name) or {}
            state = ts.get("State") or TASK_STATE_PENDING
            if ts.get("Failed"):
                events[name] = REASON_FAILED_TASK
            elif state == TASK_STATE_PENDING:
                events[name] = reason_not_running(self.healthy_deadline_ns)
            elif state == TASK_STATE_DEAD:
                if info.must_run:
                    events[name] = REASON_DEAD_TASK
            elif state == TASK_STATE_RUNNING:
                started = rfc3339_to_ns(ts.get("StartedAt"))
                if started + self.min_healthy_ns > self.deadline_ns:
                    events[name] = reason_not_running_long_enough(
                        self.min_healthy_ns, self.healthy_deadline_ns
                    )
                elif self.require_checks and self._checks_ok_since is None and info.must_run:
                    events[name] = REASON_SERVICES
        return events
