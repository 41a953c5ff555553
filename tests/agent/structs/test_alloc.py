"""Allocation constructors, task-event display messages and client status rules."""

from __future__ import annotations

from typing import Any

import pytest

from nomadpaas.agent.structs.alloc import (
    ZERO_TIME,
    alloc_index,
    alloc_name,
    alloc_stub,
    alloc_terminal,
    client_status_from_task_states,
    last_event_time_ns,
    new_allocation,
    new_task_event,
    new_task_state,
    ns_to_rfc3339,
    rfc3339_to_ns,
)
from nomadpaas.agent.structs.deployment import (
    DESCRIPTION_RUNNING,
    deployment_active,
    has_auto_promote,
    new_deployment,
    new_deployment_state,
    no_rollback_same_spec_suffix,
    requires_promotion,
    rollback_suffix,
)
from nomadpaas.agent.structs.duration import NS_PER_MIN, NS_PER_S
from nomadpaas.agent.structs.evaluation import eval_terminal, new_evaluation

JOB = {"ID": "web", "Namespace": "default", "Type": "service", "Version": 3, "Priority": 50}

EVENT_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("Received", {}, "Task received by client"),
    ("Task Setup", {"Message": "Building Task Directory"}, "Building Task Directory"),
    ("Started", {}, "Task started by client"),
    ("Downloading Artifacts", {}, "Client is downloading artifacts"),
    ("Failed Artifact Download", {"DownloadError": "404"}, "404"),
    ("Terminated", {"ExitCode": 0}, "Exit Code: 0"),
    ("Terminated", {"ExitCode": 137, "Signal": 9}, "Exit Code: 137, Signal: 9"),
    ("Terminated", {"ExitCode": 1, "Message": "boom"}, 'Exit Code: 1, Exit Message: "boom"'),
    (
        "Restarting",
        {"StartDelay": 16 * NS_PER_S, "RestartReason": "Restart within policy"},
        "Task restarting in 16s",
    ),
    (
        "Restarting",
        {
            "StartDelay": 90 * NS_PER_S,
            "RestartReason": "Exceeded allowed attempts, applying a delay",
        },
        "Exceeded allowed attempts, applying a delay - Task restarting in 1m30s",
    ),
    (
        "Not Restarting",
        {
            "RestartReason": 'Exceeded allowed attempts 2 in interval 30m0s and mode is "fail"',
            "FailsTask": True,
        },
        'Exceeded allowed attempts 2 in interval 30m0s and mode is "fail"',
    ),
    ("Not Restarting", {}, "Task exceeded restart policy"),
    ("Killing", {"KillTimeout": 5 * NS_PER_S}, "Sent interrupt. Waiting 5s before force killing"),
    ("Killing", {"KillReason": "oom"}, "oom"),
    ("Killed", {}, "Task successfully killed"),
    (
        "Driver Failure",
        {"DriverError": 'binary "x" could not be found'},
        'binary "x" could not be found',
    ),
    ("Sibling Task Failed", {"FailedSibling": "db"}, 'Task\'s sibling "db" failed'),
]


@pytest.mark.parametrize(("etype", "fields", "display"), EVENT_CASES)
def test_task_event_display_message(etype: str, fields: dict[str, Any], display: str) -> None:
    event = new_task_event(etype, now_ns=7, **fields)
    assert event["DisplayMessage"] == display
    assert (event["Type"], event["Time"]) == (etype, 7)


def test_task_event_details_mirror_fields() -> None:
    event = new_task_event("Terminated", now_ns=1, ExitCode=0)
    assert event["Details"] == {"exit_code": "0", "signal": "0"}
    event = new_task_event("Terminated", now_ns=1, ExitCode=1, Message="boom")
    assert event["Details"] == {"exit_code": "1", "signal": "0", "exit_message": "boom"}
    event = new_task_event(
        "Not Restarting", now_ns=1, RestartReason="Policy allows no restarts", FailsTask=True
    )
    assert event["Details"] == {"restart_reason": "Policy allows no restarts", "fails_task": "true"}
    assert new_task_event("Started", now_ns=1)["Details"] is None


def test_task_event_rejects_unknown_fields() -> None:
    with pytest.raises(TypeError):
        new_task_event("Started", now_ns=1, Bogus=1)


def _ts(state: str, failed: bool = False) -> dict[str, Any]:
    return {**new_task_state(), "State": state, "Failed": failed}


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ({"a": _ts("dead", True), "b": _ts("running")}, ("failed", "Failed tasks")),
        ({"a": _ts("running"), "b": _ts("pending")}, ("running", "Tasks are running")),
        ({"a": _ts("pending"), "b": _ts("dead")}, ("pending", "No tasks have started")),
        ({"a": _ts("dead"), "b": _ts("dead")}, ("complete", "All tasks have completed")),
        ({}, ("pending", "No tasks have started")),
    ],
)
def test_client_status_from_task_states(states: dict[str, Any], expected: tuple[str, str]) -> None:
    assert client_status_from_task_states(states) == expected


def test_new_allocation_and_stub() -> None:
    alloc = new_allocation(
        alloc_id="a1",
        eval_id="e1",
        job=JOB,
        group="app",
        name=alloc_name("web", "app", 2),
        node_id="n1",
        node_name="local",
        now_ns=99,
        canary=True,
    )
    assert (alloc["Name"], alloc["DesiredStatus"], alloc["ClientStatus"]) == (
        "web.app[2]",
        "run",
        "pending",
    )
    assert alloc["DeploymentStatus"] == {
        "Healthy": None,
        "Timestamp": ZERO_TIME,
        "Canary": True,
        "ModifyIndex": 0,
    }
    assert alloc["TaskStates"] is None and alloc["CreateTime"] == 99
    stub = alloc_stub(alloc)
    assert (stub["JobType"], stub["JobVersion"]) == ("service", 3)
    assert "Job" not in stub and "AllocatedResources" not in stub
    assert "AllocatedResources" in alloc_stub(alloc, resources=True)
    assert alloc_index(alloc["Name"]) == 2


@pytest.mark.parametrize(
    ("desired", "client", "terminal"),
    [
        ("run", "running", False),
        ("stop", "running", True),
        ("run", "complete", True),
        ("run", "lost", True),
    ],
)
def test_alloc_terminal(desired: str, client: str, terminal: bool) -> None:
    assert alloc_terminal({"DesiredStatus": desired, "ClientStatus": client}) is terminal


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, ZERO_TIME),
        (1_700_000_000 * NS_PER_S, "2023-11-14T22:13:20Z"),
        (1_700_000_000 * NS_PER_S + 120_000_000, "2023-11-14T22:13:20.12Z"),
        (1_700_000_000 * NS_PER_S + 1, "2023-11-14T22:13:20.000000001Z"),
    ],
)
def test_rfc3339_round_trip(ns: int, text: str) -> None:
    assert ns_to_rfc3339(ns) == text
    assert rfc3339_to_ns(text) == ns


def test_last_event_time_prefers_finished_at() -> None:
    alloc = {
        "ModifyTime": 5,
        "TaskStates": {"a": {**new_task_state(), "FinishedAt": ns_to_rfc3339(9 * NS_PER_S)}},
    }
    assert last_event_time_ns(alloc) == 9 * NS_PER_S
    assert last_event_time_ns({"ModifyTime": 5, "TaskStates": None}) == 5


def test_evaluation_defaults() -> None:
    ev = new_evaluation(eval_id="e", job=JOB, triggered_by="job-register", now_ns=3)
    assert (ev["Status"], ev["Type"], ev["Priority"], ev["TriggeredBy"]) == (
        "pending",
        "service",
        50,
        "job-register",
    )
    assert (
        new_evaluation(eval_id="e", job=JOB, triggered_by="x", now_ns=3, priority=80)["Priority"]
        == 80
    )
    assert eval_terminal({**ev, "Status": "canceled"}) and not eval_terminal(ev)


def test_deployment_defaults_and_promotion_flags() -> None:
    d = new_deployment(
        deployment_id="d",
        job={**JOB, "CreateIndex": 4, "JobModifyIndex": 8},
        eval_priority=50,
        now_ns=1,
    )
    assert (d["Status"], d["StatusDescription"], d["JobVersion"], d["JobCreateIndex"]) == (
        "running",
        DESCRIPTION_RUNNING,
        3,
        4,
    )
    assert d["JobSpecModifyIndex"] == 8 and deployment_active(d)
    state = new_deployment_state({"AutoPromote": True, "ProgressDeadline": 10 * NS_PER_MIN})
    assert state["RequireProgressBy"] == ZERO_TIME and state["PlacedCanaries"] is None
    d["TaskGroups"]["app"] = {**state, "DesiredCanaries": 1}
    assert requires_promotion(d) and has_auto_promote(d)
    d["TaskGroups"]["app"]["Promoted"] = True
    assert not requires_promotion(d)
    assert not deployment_active({**d, "Status": "successful"})
    assert rollback_suffix(2) == " - rolling back to job version 2"
    assert no_rollback_same_spec_suffix(1).endswith("as current job has same specification")
