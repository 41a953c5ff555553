"""Plan apply against the in-memory store: one atomic `PlanResult` write, indexes,
replacement links, deployment counters, stability, and port-conflict rejection."""

from __future__ import annotations

from typing import Any

from nomadpaas.agent.scheduler.scheduler import Plan
from nomadpaas.agent.server.job_register import upsert_job
from nomadpaas.agent.server.plan_apply import apply_plan
from nomadpaas.agent.server.state.schema import ALLOCS, DEPLOYMENTS, JOB_VERSIONS, JOBS
from nomadpaas.agent.server.state.state_store import Commit, StateStore
from nomadpaas.agent.structs.alloc import new_allocation
from nomadpaas.agent.structs.deployment import new_deployment, new_deployment_state
from nomadpaas.agent.structs.job import canonicalize


def setup() -> tuple[StateStore, Any]:
    store = StateStore(None)
    raw = {
        "ID": "web",
        "TaskGroups": [{"Name": "app", "Tasks": [{"Name": "t", "Driver": "raw_exec"}]}],
    }
    job, _ = store.write(
        "JobRegisterRequestType", lambda txn: upsert_job(txn, canonicalize(raw)).job
    )
    return store, job


def alloc(job: Any, alloc_id: str, port: int, **over: Any) -> dict[str, Any]:
    a = new_allocation(
        alloc_id=alloc_id, eval_id="e1", job=job, group="app", name="web.app[0]",
        node_id="n1", node_name="local", now_ns=1, **over,
    )  # fmt: skip
    a["AllocatedResources"] = {"Shared": {"Ports": [{"Label": "http", "Value": port}]}}
    return a


def test_plan_commits_allocs_stops_and_deployment_in_one_write() -> None:
    store, job = setup()
    commits: list[Commit] = []
    store.subscribe(commits.append)
    d = new_deployment(deployment_id="d1", job=job, eval_priority=50, now_ns=1)
    d["TaskGroups"]["app"] = new_deployment_state({"ProgressDeadline": 10**9, "MaxParallel": 1})
    plan = Plan("e1", 50, job, store.latest_index, deployment=d)
    plan.node_allocation = [alloc(job, "a1", 25000, deployment_id="d1")]
    result = apply_plan(store, plan)
    assert not result.rejected and result.alloc_index == store.latest_index
    assert len(commits) == 1 and commits[0].msg_type == "PlanResult"
    snap = store.snapshot()
    a1 = snap.get(ALLOCS, ("a1",))
    assert a1["CreateIndex"] == a1["ModifyIndex"] == result.alloc_index
    dep = snap.get(DEPLOYMENTS, ("d1",))
    assert dep["TaskGroups"]["app"]["PlacedAllocs"] == 1
    assert dep["TaskGroups"]["app"]["RequireProgressBy"] != "0001-01-01T00:00:00Z"
    assert snap.get(JOBS, ("default", "web"))["Status"] == "running"

    replace = Plan("e2", 50, job, store.latest_index)
    replace.node_update = [
        {"ID": "a1", "DesiredDescription": "alloc is being updated due to job update",
         "ClientStatus": ""}
    ]  # fmt: skip
    replace.node_allocation = [alloc(job, "a2", 25000, previous_allocation="a1")]
    replace.deployment_updates = [
        {"DeploymentID": "d1", "Status": "successful", "StatusDescription": "done"}
    ]
    assert not apply_plan(store, replace).rejected, "a stopped alloc frees its port"
    snap = store.snapshot()
    a1 = snap.get(ALLOCS, ("a1",))
    assert (a1["DesiredStatus"], a1["NextAllocation"]) == ("stop", "a2")
    assert snap.get(DEPLOYMENTS, ("d1",))["Status"] == "successful"
    assert snap.get(JOB_VERSIONS, ("default", "web", f"{0:020d}"))["Stable"] is True


def test_port_conflict_rejects_the_whole_plan() -> None:
    store, job = setup()
    first = Plan("e1", 50, job, store.latest_index)
    first.node_allocation = [alloc(job, "a1", 25000)]
    apply_plan(store, first)
    before = store.latest_index
    clash = Plan("e2", 50, job, before)
    clash.node_allocation = [alloc(job, "a2", 25001), alloc(job, "a3", 25000)]
    result = apply_plan(store, clash)
    assert result.rejected and result.refresh_index > 0
    assert store.latest_index == before, "nothing of a rejected plan is written"
    assert store.snapshot().get(ALLOCS, ("a2",)) is None


def test_stop_of_unknown_alloc_is_ignored() -> None:
    store, job = setup()

    plan = Plan("e1", 50, job, store.latest_index)
    plan.node_update = [{"ID": "ghost", "DesiredDescription": "x", "ClientStatus": ""}]
    index = store.latest_index
    assert not apply_plan(store, plan).rejected
    assert store.latest_index == index


def test_in_place_update_keeps_what_the_client_reported_meanwhile() -> None:
    store, job = setup()
    first = Plan("e1", 50, job, store.latest_index)
    first.node_allocation = [alloc(job, "a1", 25000)]
    apply_plan(store, first)
    stale = dict(store.snapshot().get(ALLOCS, ("a1",)))  # the scheduler's snapshot copy

    def client_update(txn: Any) -> None:
        row = dict(txn.get(ALLOCS, ("a1",)))
        row.update(ClientStatus="running", TaskStates={"t": {"State": "running"}})
        txn.put(ALLOCS, ("a1",), row)

    store.write("AllocClientUpdateRequestType", client_update)
    stale["FollowupEvalID"] = "e9"
    update = Plan("e2", 50, job, store.latest_index)
    update.node_allocation = [stale]
    apply_plan(store, update)
    row = store.snapshot().get(ALLOCS, ("a1",))
    assert (row["ClientStatus"], row["FollowupEvalID"]) == ("running", "e9")
    assert row["TaskStates"]["t"]["State"] == "running"
