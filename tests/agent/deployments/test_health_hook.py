"""The health hook over a fake alloc runner and a fake check source: what it tracks, what
it reports through the runner's update path, and how it starts over after an in-place
update into a new deployment."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from nomadpaas.agent.client.allocdir import AllocDir
from nomadpaas.agent.client.allocrunner.health_hook import HealthHook, should_track
from nomadpaas.agent.structs.alloc import ns_to_rfc3339

S = 1_000_000_000
WAIT_S = 5.0


@dataclass
class Sink:
    events: list[dict[str, Any]] = field(default_factory=list)

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)


class FakeRunner:
    def __init__(self) -> None:
        self.tasks = {"srv": Sink()}
        self.states: dict[str, Any] = {"srv": {"State": "pending", "Failed": False}}
        self.statuses: list[dict[str, Any]] = []
        self.reported = threading.Event()

    def task_states(self) -> dict[str, Any]:
        return dict(self.states)

    def set_deployment_status(self, status: dict[str, Any]) -> None:
        self.statuses.append(status)
        if status:
            self.reported.set()


@dataclass(frozen=True)
class Checks:
    total: int
    healthy: bool


class FakeChecks:
    def __init__(self) -> None:
        self.view = Checks(1, False)
        self.callbacks: list[Callable[[int], None]] = []

    def alloc_checks(self, alloc_id: str) -> Checks:
        return self.view

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def set(self, healthy: bool) -> None:
        self.view = Checks(1, healthy)
        for cb in list(self.callbacks):
            cb(2)


def make_alloc(
    deployment_id: str = "d1", health_check: str = "task_states", **over: Any
) -> dict[str, Any]:
    update = {
        "MaxParallel": 1,
        "HealthCheck": health_check,
        "MinHealthyTime": S // 5,
        "HealthyDeadline": 3 * S,
    }
    group = {
        "Name": "app",
        "Update": update,
        "Services": [{"Name": "web", "Checks": [{"Type": "http"}]}],
        "Tasks": [{"Name": "srv"}],
    }
    alloc = {
        "ID": "a1",
        "TaskGroup": "app",
        "DeploymentID": deployment_id,
        "DesiredStatus": "run",
        "DeploymentStatus": None,
        "Job": {"Type": "service", "TaskGroups": [group]},
    }
    alloc.update(over)
    return alloc


def running_state() -> dict[str, Any]:
    return {
        "srv": {"State": "running", "Failed": False, "StartedAt": ns_to_rfc3339(time.time_ns())}
    }


@pytest.mark.parametrize(
    ("over", "tracked"),
    [
        ({}, True),
        ({"DeploymentID": ""}, False),
        ({"DesiredStatus": "stop"}, False),
        ({"DeploymentStatus": {"Healthy": True}}, False),
    ],
)
def test_should_track(over: dict[str, Any], tracked: bool) -> None:
    assert should_track(make_alloc(**over)) is tracked


def test_manual_and_batch_are_not_tracked() -> None:
    assert not should_track(make_alloc(health_check="manual"))
    batch = make_alloc()
    batch["Job"] = {**batch["Job"], "Type": "batch"}
    assert not should_track(batch)


def test_reports_healthy_after_min_healthy_time(tmp_path: Any) -> None:
    runner = FakeRunner()
    hook = HealthHook(runner)
    alloc = make_alloc()
    hook.prerun(alloc, AllocDir(str(tmp_path), "a1"))
    try:
        runner.states = running_state()
        hook.task_states_updated(alloc, runner.states)
        assert runner.reported.wait(WAIT_S)
        (status,) = runner.statuses
        assert status["Healthy"] is True and set(status) == {"Healthy", "Timestamp"}
    finally:
        hook.shutdown()


def test_failed_task_reports_unhealthy_with_task_event(tmp_path: Any) -> None:
    runner = FakeRunner()
    hook = HealthHook(runner)
    alloc = make_alloc()
    hook.prerun(alloc, AllocDir(str(tmp_path), "a1"))
    try:
        runner.states = {"srv": {"State": "dead", "Failed": True}}
        hook.task_states_updated(alloc, runner.states)
        assert runner.reported.wait(WAIT_S)
        assert runner.statuses[-1]["Healthy"] is False
        (event,) = runner.tasks["srv"].events
        assert (event["Type"], event["DisplayMessage"]) == (
            "Alloc Unhealthy",
            "Unhealthy because of failed task",
        )
    finally:
        hook.shutdown()


def test_checks_mode_waits_for_passing_checks(tmp_path: Any) -> None:
    runner, checks = FakeRunner(), FakeChecks()
    hook = HealthHook(runner, checks)
    alloc = make_alloc(health_check="checks")
    hook.prerun(alloc, AllocDir(str(tmp_path), "a1"))
    try:
        runner.states = running_state()
        hook.task_states_updated(alloc, runner.states)
        assert not runner.reported.wait(0.5)  # tasks up, check still failing
        checks.set(True)
        assert runner.reported.wait(WAIT_S)
        assert runner.statuses[-1]["Healthy"] is True
        assert checks.callbacks == []  # unsubscribed once the verdict is out
    finally:
        hook.shutdown()


def test_in_place_update_into_new_deployment_judges_again(tmp_path: Any) -> None:
    runner = FakeRunner()
    runner.states = running_state()
    hook = HealthHook(runner)
    hook.prerun(make_alloc(), AllocDir(str(tmp_path), "a1"))
    try:
        assert runner.reported.wait(WAIT_S)
        runner.reported.clear()
        hook.update(make_alloc("d2"))
        assert runner.statuses[-1] == {}  # the old verdict is withdrawn at once
        assert runner.reported.wait(WAIT_S)
        assert [s.get("Healthy") for s in runner.statuses] == [True, None, True]
    finally:
        hook.shutdown()
