"""Commits → events (server/state/events.py) against a real in-memory state store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nomadpaas.agent.server.state import schema
from nomadpaas.agent.server.state.events import (
    ALLOC_TIMEOUT_REASON,
    MSG_TYPE_EVENTS,
    SERVICE_REGISTRATIONS,
    attach,
    events_from_commit,
)
from nomadpaas.agent.server.state.state_store import Commit, StateStore, Txn
from nomadpaas.agent.server.stream.event_broker import EventBroker
from nomadpaas.agent.server.stream.subscription import SubscribeRequest
from nomadpaas.agent.structs.event import Events

JOB = {"ID": "web", "Namespace": "default", "Version": 0}
EVAL = {"ID": "e1", "Namespace": "default", "JobID": "web", "DeploymentID": ""}
ALLOC = {
    "ID": "a1",
    "Namespace": "default",
    "JobID": "web",
    "DeploymentID": "d1",
    "Job": JOB,
    "ClientStatus": "running",
}
DEPLOYMENT = {"ID": "d1", "Namespace": "default", "JobID": "web"}
NODE = {"ID": "n1", "SecretID": "s3cret", "Name": "vm"}
VAR = {
    "Namespace": "default",
    "Path": "apps/web",
    "CreateIndex": 1,
    "CreateTime": 5,
    "ModifyIndex": 1,
    "ModifyTime": 5,
    "Items": {"PASSWORD": "hunter2"},
}
SERVICE = {"ID": "_nomad-task-a1-web", "Namespace": "default", "JobID": "web", "ServiceName": "web"}

TABLES = (*schema.TABLES, SERVICE_REGISTRATIONS)


def capture(store: StateStore) -> list[Commit]:
    commits: list[Commit] = []
    store.subscribe(commits.append)
    return commits


def put(table: str, key: tuple[str, ...], row: dict[str, Any]) -> Callable[[Txn], None]:
    return lambda txn: txn.put(table, key, row) and None


def one_event(store: StateStore, msg: str, fn: Callable[[Txn], None]) -> dict[str, Any]:
    commits = capture(store)
    store.write(msg, fn)
    events = events_from_commit(commits[-1])
    assert events is not None and len(events.events) == 1
    return events.events[0].to_dict()


@pytest.mark.parametrize(
    ("msg", "table", "key", "row", "want"),
    [
        (
            "JobRegisterRequestType",
            schema.JOBS,
            ("default", "web"),
            JOB,
            {"Topic": "Job", "Type": "JobRegistered", "Key": "web", "Namespace": "default",
             "FilterKeys": None, "Payload": {"Job": JOB}},
        ),
        (
            "JobRegisterRequestType",
            schema.EVALS,
            ("e1",),
            EVAL,
            {"Topic": "Evaluation", "Type": "JobRegistered", "Key": "e1",
             "Namespace": "default", "FilterKeys": ["web", ""], "Payload": {"Evaluation": EVAL}},
        ),
        (
            "ApplyPlanResultsRequestType",
            schema.ALLOCS,
            ("a1",),
            ALLOC,
            {"Topic": "Allocation", "Type": "PlanResult", "Key": "a1", "Namespace": "default",
             "FilterKeys": ["web", "d1"], "Payload": {"Allocation": {**ALLOC, "Job": None}}},
        ),
        (
            "PlanResult",  # the agent's own name for the plan-apply write
            schema.DEPLOYMENTS,
            ("d1",),
            DEPLOYMENT,
            {"Topic": "Deployment", "Type": "PlanResult", "Key": "d1", "Namespace": "default",
             "FilterKeys": ["web"], "Payload": {"Deployment": DEPLOYMENT}},
        ),
        (
            "AllocClientUpdateRequestType",
            schema.ALLOCS,
            ("a1",),
            ALLOC,
            {"Type": "AllocationUpdated", "Topic": "Allocation"},
        ),
        (
            "AllocUpdateDesiredTransitionRequestType",
            schema.ALLOCS,
            ("a1",),
            ALLOC,
            {"Type": "AllocationUpdateDesiredStatus"},
        ),
        ("EvalUpdateRequestType", schema.EVALS, ("e1",), EVAL, {"Type": "EvaluationUpdated"}),
        (
            "DeploymentStatusUpdateRequestType",
            schema.DEPLOYMENTS,
            ("d1",),
            DEPLOYMENT,
            {"Type": "DeploymentStatusUpdate"},
        ),
        (
            "DeploymentPromoteRequestType",
            schema.DEPLOYMENTS,
            ("d1",),
            DEPLOYMENT,
            {"Type": "DeploymentPromotion"},
        ),
        (
            "DeploymentAllocHealthRequestType",
            schema.ALLOCS,
            ("a1",),
            ALLOC,
            {"Type": "DeploymentAllocHealth", "Topic": "Allocation"},
        ),
        (
            "NodeRegisterRequestType",
            schema.NODES,
            ("n1",),
            NODE,
            {"Topic": "Node", "Type": "NodeRegistration", "Key": "n1", "Namespace": "",
             "FilterKeys": None, "Payload": {"Node": {**NODE, "SecretID": ""}}},
        ),
        (
            "NodeUpdateEligibilityRequestType",
            schema.NODES,
            ("n1",),
            NODE,
            {"Type": "NodeEligibility"},
        ),
        (
            "VarApply",  # the agent's own name for VarApplyStateRequestType
            schema.VARIABLES,
            ("default", "apps/web"),
            VAR,
            {"Topic": "Variable", "Type": "VariableUpdated", "Key": "apps/web",
             "Namespace": "default", "FilterKeys": None,
             "Payload": {"Metadata": {k: v for k, v in VAR.items() if k != "Items"},
                         "Deleted": False}},
        ),
        (
            "ServiceRegistrationUpsertRequestType",
            SERVICE_REGISTRATIONS,
            ("default", "_nomad-task-a1-web"),
            SERVICE,
            {"Topic": "Service", "Type": "ServiceRegistration", "Key": "_nomad-task-a1-web",
             "FilterKeys": ["web", "web"], "Payload": {"Service": SERVICE}},
        ),
    ],
)  # fmt: skip
def test_event_shape(
    msg: str, table: str, key: tuple[str, ...], row: dict[str, Any], want: dict[str, Any]
) -> None:
    store = StateStore(None, TABLES)
    got = one_event(store, msg, put(table, key, row))
    assert got["Index"] == store.latest_index
    assert {k: got[k] for k in want} == want


def test_variable_items_never_reach_the_stream() -> None:
    store = StateStore(None, TABLES)
    commits = capture(store)
    store.write("VarApply", put(schema.VARIABLES, ("default", "apps/web"), VAR))
    events = events_from_commit(commits[-1])
    assert events is not None
    assert b"hunter2" not in events.events[0].json_bytes()


def test_alloc_timeout_payload() -> None:
    store = StateStore(None, TABLES)
    row = {**ALLOC, "ClientStatus": "complete", "ClientDescription": ALLOC_TIMEOUT_REASON}
    got = one_event(store, "AllocClientUpdateRequestType", put(schema.ALLOCS, ("a1",), row))
    assert got["Payload"]["Timeout"] is True
    assert got["Payload"]["TimeoutReason"] == ALLOC_TIMEOUT_REASON
    plain = one_event(store, "AllocClientUpdateRequestType", put(schema.ALLOCS, ("a1",), ALLOC))
    assert "Timeout" not in plain["Payload"]


def test_deletes() -> None:
    store = StateStore(None, TABLES)
    commits = capture(store)

    def seed(txn: Txn) -> None:
        for table, key, row in (
            (schema.JOBS, ("default", "web"), JOB),
            (schema.EVALS, ("e1",), EVAL),
            (schema.ALLOCS, ("a1",), ALLOC),
            (schema.DEPLOYMENTS, ("d1",), DEPLOYMENT),
            (schema.VARIABLES, ("default", "apps/web"), VAR),
        ):
            txn.put(table, key, row)

    store.write("JobRegisterRequestType", seed)

    def purge(txn: Txn) -> None:
        for table, key in (
            (schema.JOBS, ("default", "web")),
            (schema.EVALS, ("e1",)),
            (schema.ALLOCS, ("a1",)),
            (schema.DEPLOYMENTS, ("d1",)),
        ):
            txn.delete(table, key)

    store.write("JobDeregisterRequestType", purge)
    events = events_from_commit(commits[-1])
    # Only the Job's deletion is an event (GC'd evals/allocs/deployments are silent).
    assert events is not None and [e.to_dict()["Topic"] for e in events.events] == ["Job"]
    job_event = events.events[0].to_dict()
    assert job_event["Type"] == "JobDeregistered"
    assert job_event["Payload"] == {"Job": JOB, "Deleted": True}

    store.write(
        "VarApply", lambda txn: txn.delete(schema.VARIABLES, ("default", "apps/web")) and None
    )
    var_events = events_from_commit(commits[-1])
    assert var_events is not None
    assert var_events.events[0].to_dict()["Payload"]["Deleted"] is True


@pytest.mark.parametrize(
    "msg",
    [
        "JobStabilityRequestType",
        "JobVersionTagRequestType",
        "ScalingEventRegisterRequestType",
        "NamespaceUpsert",
        "SomethingUnknown",
    ],
)
def test_message_types_without_events(msg: str) -> None:
    assert msg not in MSG_TYPE_EVENTS
    store = StateStore(None, TABLES)
    commits = capture(store)
    store.write(msg, put(schema.JOBS, ("default", "web"), JOB))
    assert events_from_commit(commits[-1]) is None


def test_untracked_tables_make_no_events() -> None:
    store = StateStore(None, TABLES)
    commits = capture(store)
    store.write(
        "JobRegisterRequestType",
        put(schema.JOB_SUMMARIES, ("default", "web"), {"JobID": "web"}),
    )
    assert events_from_commit(commits[-1]) is None


def test_one_batch_per_commit_with_every_topic_in_it() -> None:
    store = StateStore(None, TABLES)
    broker = EventBroker()
    attach(store, broker)
    sub = broker.subscribe(SubscribeRequest(namespaces=None))

    def register(txn: Txn) -> None:
        txn.put(schema.JOBS, ("default", "web"), JOB)
        txn.put(schema.EVALS, ("e1",), EVAL)

    _, index = store.write("JobRegisterRequestType", register)
    _, index2 = store.write("EvalUpdateRequestType", put(schema.EVALS, ("e1",), EVAL))
    got: list[Events] = []
    while (batch := sub.next_no_block()) is not None:
        got.append(batch)
    assert [b.index for b in got] == [index, index2]
    assert [(e.topic, e.type) for e in got[0].events] == [
        ("Job", "JobRegistered"),
        ("Evaluation", "JobRegistered"),
    ]
    assert [(e.topic, e.type) for e in got[1].events] == [("Evaluation", "EvaluationUpdated")]


def test_null_ids_render_as_empty_strings_in_filter_keys() -> None:
    store = StateStore(None, TABLES)
    row = {**ALLOC, "DeploymentID": None}
    got = one_event(store, "ApplyPlanResultsRequestType", put(schema.ALLOCS, ("a1",), row))
    assert got["FilterKeys"] == ["web", ""]
