"""The allocation health tracker, table-driven over a fake clock (no threads)."""

from __future__ import annotations

from typing import Any

import pytest

from nomadpaas.agent.client.allochealth.tracker import (
    REASON_DEAD_TASK,
    REASON_FAILED_TASK,
    REASON_SERVICES,
    ChecksView,
    TaskInfo,
    Tracker,
    desired_checks,
    task_infos,
)
from nomadpaas.agent.structs.alloc import ns_to_rfc3339

S = 1_000_000_000
T0 = 1_800_000_000 * S  # an arbitrary wall-clock start
MIN_HEALTHY = 10 * S
DEADLINE = 300 * S


def ts(state: str, started: int = 0, *, failed: bool = False) -> dict[str, Any]:
    return {
        "State": state,
        "Failed": failed,
        "StartedAt": ns_to_rfc3339(started) if started else None,
        "FinishedAt": None,
    }


def tracker(tasks: list[TaskInfo] | None = None, *, checks: int = 0) -> Tracker:
    return Tracker(
        tasks or [TaskInfo("web")],
        min_healthy_time_ns=MIN_HEALTHY,
        healthy_deadline_ns=DEADLINE,
        use_checks=checks > 0,
        desired_checks=checks,
        start_ns=T0,
    )


# Each step: (time offset in s, new task states or None, checks view or None, expected
# verdict after the step: None, True (healthy) or {task: Alloc Unhealthy reason}).
Step = tuple[int, dict[str, Any] | None, ChecksView | None, Any]
CASES: dict[str, tuple[list[TaskInfo] | None, int, list[Step]]] = {
    "healthy_after_min_healthy_time": (
        None,
        0,
        [
            (1, {"web": ts("running", T0 + S)}, None, None),
            (10, None, None, None),
            (11, None, None, True),
        ],
    ),
    "restart_resets_the_timer": (
        None,
        0,
        [
            (1, {"web": ts("running", T0 + S)}, None, None),
            (5, {"web": ts("pending", T0 + S)}, None, None),
            (6, {"web": ts("running", T0 + 6 * S)}, None, None),
            (12, None, None, None),
            (16, None, None, True),
        ],
    ),
    "failed_task_is_unhealthy_at_once": (
        None,
        0,
        [(2, {"web": ts("dead", T0 + S, failed=True)}, None, {"web": REASON_FAILED_TASK})],
    ),
    "dead_main_task_is_unhealthy": (
        None,
        0,
        [(2, {"web": ts("dead", T0 + S)}, None, {"web": REASON_DEAD_TASK})],
    ),
    "finished_prestart_and_poststart_tasks_are_ignored": (
        [TaskInfo("init", "prestart"), TaskInfo("web"), TaskInfo("warm", "poststart")],
        0,
        [
            (
                1,
                {"init": ts("dead", T0), "web": ts("running", T0 + S), "warm": ts("dead", T0 + S)},
                None,
                None,
            ),
            (11, None, None, True),
        ],
    ),
    "dead_sidecar_is_unhealthy": (
        [TaskInfo("proxy", "prestart", sidecar=True), TaskInfo("web")],
        0,
        [
            (
                1,
                {"proxy": ts("dead", T0), "web": ts("running", T0 + S)},
                None,
                {"proxy": REASON_DEAD_TASK},
            )
        ],
    ),
    "pending_at_deadline": (
        None,
        0,
        [
            (299, {"web": ts("pending")}, None, None),
            (300, None, None, {"web": "Task not running by healthy_deadline of 5m0s"}),
        ],
    ),
    "running_too_briefly_at_deadline": (
        None,
        0,
        [
            (295, {"web": ts("running", T0 + 295 * S)}, None, None),
            (
                300,
                None,
                None,
                {"web": "Task not running for min_healthy_time of 10s by healthy_deadline of 5m0s"},
            ),
        ],
    ),
    "checks_must_pass_for_min_healthy_time": (
        None,
        1,
        [
            (1, {"web": ts("running", T0 + S)}, ChecksView(1, False), None),
            (20, None, None, None),
            (21, None, ChecksView(1, True), None),
            (25, None, ChecksView(1, False), None),  # a failing check resets the timer
            (26, None, ChecksView(1, True), None),
            (35, None, None, None),
            (36, None, None, True),
        ],
    ),
    "checks_never_registered": (
        None,
        1,
        [
            (1, {"web": ts("running", T0 + S)}, ChecksView(0, True), None),
            (300, None, None, {"web": REASON_SERVICES}),
        ],
    ),
    "no_checks_defined_behaves_like_task_states": (
        None,
        0,
        [(1, {"web": ts("running", T0 + S)}, ChecksView(0, True), None), (11, None, None, True)],
    ),
    "verdict_is_sticky": (
        None,
        0,
        [
            (1, {"web": ts("running", T0 + S)}, None, None),
            (11, None, None, True),
            (12, {"web": ts("dead", T0 + S, failed=True)}, None, True),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tracker(name: str) -> None:
    tasks, checks, steps = CASES[name]
    t = tracker(tasks, checks=checks)
    for offset, states, view, expected in steps:
        now = T0 + offset * S
        if states is not None:
            failed = any(s["Failed"] for s in states.values())
            t.set_task_states(states, "failed" if failed else "running", now)
        if view is not None:
            t.set_checks(view, now)
        verdict = t.poll(now)
        if expected is None:
            assert verdict is None, f"{name} at +{offset}s: {verdict}"
        elif expected is True:
            assert verdict is not None and verdict.healthy, f"{name} at +{offset}s"
        else:
            assert verdict is not None and not verdict.healthy, f"{name} at +{offset}s"
            assert dict(verdict.events) == expected


def test_next_wakeup_is_the_timer_or_the_deadline() -> None:
    t = tracker()
    assert t.next_wakeup_ns() == T0 + DEADLINE
    t.set_task_states({"web": ts("running", T0 + S)}, "running", T0 + 2 * S)
    assert t.next_wakeup_ns() == T0 + 2 * S + MIN_HEALTHY


def test_group_helpers() -> None:
    group = {
        "Services": [{"Checks": [{"Type": "http"}, {"Type": "tcp", "OnUpdate": "ignore"}]}],
        "Tasks": [
            {"Name": "web", "Services": [{"Checks": [{"Type": "http"}]}]},
            {"Name": "log", "Lifecycle": {"Hook": "poststart", "Sidecar": True}},
        ],
    }
    assert desired_checks(group) == 2  # readiness (OnUpdate ignore) checks do not count
    assert task_infos(group) == [TaskInfo("web"), TaskInfo("log", "poststart", True)]
