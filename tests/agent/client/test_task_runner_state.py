"""Pure decisions of the runners: TaskState transitions (task_state.py) and the lifecycle
coordinator (task_hook_coordinator.py)."""

from __future__ import annotations

from typing import Any

import pytest

from nomadpaas.agent.client.allocrunner.task_hook_coordinator import (
    TaskView,
    kill_event_type,
    startable,
)
from nomadpaas.agent.client.allocrunner.taskrunner.task_state import (
    MAX_TASK_EVENTS,
    apply_task_update,
)
from nomadpaas.agent.structs.alloc import ZERO_TIME, new_task_event, new_task_state

T0 = 1_700_000_000_000_000_000


def test_restarting_counts_and_failstask_fails() -> None:
    ts = new_task_state()
    apply_task_update(ts, "running", new_task_event("Started", now_ns=T0), T0)
    first_start = ts["StartedAt"]
    apply_task_update(ts, "pending", new_task_event("Restarting", now_ns=T0 + 5), T0 + 5)
    assert ts["Restarts"] == 1 and ts["LastRestart"] == "2023-11-14T22:13:20.000000005Z"
    apply_task_update(ts, "running", None, T0 + 10)
    assert ts["StartedAt"] != first_start  # every start moves StartedAt
    apply_task_update(ts, None, new_task_event("Not Restarting", now_ns=T0, FailsTask=True), T0)
    assert ts["Failed"] is True and ts["State"] == "running"
    apply_task_update(ts, "dead", None, T0 + 20)
    finished = ts["FinishedAt"]
    apply_task_update(ts, "dead", None, T0 + 30)
    assert ts["FinishedAt"] == finished != ZERO_TIME


def test_events_are_capped_keeping_the_newest() -> None:
    ts = new_task_state()
    for i in range(MAX_TASK_EVENTS + 3):
        apply_task_update(
            ts, None, new_task_event("Task hook message", now_ns=i, Message=str(i)), i
        )
    assert [e["Message"] for e in ts["Events"]] == [str(i) for i in range(3, 13)]


def view(
    name: str,
    kind: str = "main",
    state: str = "pending",
    *,
    sidecar: bool = False,
    leader: bool = False,
    failed: bool = False,
    started: bool = False,
) -> TaskView:
    ts: dict[str, Any] = {**new_task_state(), "State": state, "Failed": failed}
    if started or state == "running":
        ts["StartedAt"] = "2024-01-01T00:00:00Z"
    return TaskView(name, kind, sidecar, leader, ts)


@pytest.mark.parametrize(
    ("tasks", "expected"),
    [
        ([view("m")], {"m"}),
        ([view("p", "prestart"), view("m")], {"p"}),
        ([view("p", "prestart", "dead"), view("m")], {"p", "m"}),
        ([view("p", "prestart", "dead", failed=True), view("m")], {"p"}),
        ([view("s", "prestart", "running", sidecar=True), view("m")], {"s", "m"}),
        ([view("m"), view("ps", "poststart")], {"m"}),
        ([view("m", state="running"), view("ps", "poststart")], {"m", "ps"}),
        ([view("m", state="running"), view("z", "poststop")], {"m"}),
        ([view("m", state="dead"), view("z", "poststop")], {"m", "z"}),
    ],
)
def test_startable_follows_lifecycle_order(tasks: list[TaskView], expected: set[str]) -> None:
    assert startable(tasks) == expected


@pytest.mark.parametrize(
    ("tasks", "expected"),
    [
        ([view("a", state="running"), view("b", state="running")], None),
        ([view("a", state="dead", failed=True), view("b", state="running")],
         ("Sibling Task Failed", "a")),
        ([view("l", state="dead", leader=True), view("b", state="running")],
         ("Leader Task Dead", "")),
        ([view("m", state="dead"), view("s", "prestart", "running", sidecar=True)],
         ("Main Tasks Dead", "")),
        ([view("m", state="dead"), view("z", "poststop", "running")], None),
        ([view("a", state="dead", failed=True)], None),
    ],
)  # fmt: skip
def test_kill_decisions(tasks: list[TaskView], expected: tuple[str, str] | None) -> None:
    assert kill_event_type(tasks) == expected
