"""The watcher's writes over a real in-memory state store: each is one commit with Nomad's
message type (so the event stream types them as nomad-api.md §6 says), and the checks
that must be atomic with the change fail with Nomad's texts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agent.deployments.watcher_support import DEP_ID, alloc, deployment, job, load

from nomadpaas.agent.server.deploymentwatcher.decisions import StatusUpdate
from nomadpaas.agent.server.deploymentwatcher.state_triggers import StateTriggers
from nomadpaas.agent.server.errors import RPCError
from nomadpaas.agent.server.state.schema import ALLOCS, DEPLOYMENTS, EVALS, JOB_VERSIONS, JOBS
from nomadpaas.agent.server.state.state_store import Commit, StateStore

V0_STABLE = job(0, "v0", stable=True)


@pytest.fixture
def store() -> Iterator[StateStore]:
    s = StateStore(None)
    try:
        yield s
    finally:
        s.close()


def record(store: StateStore) -> list[Commit]:
    commits: list[Commit] = []
    store.subscribe(commits.append)
    return commits


def tables(commit: Commit) -> set[str]:
    return {c.table for c in commit.changes}


def test_failure_with_revert_is_one_status_update_write(store: StateStore) -> None:
    load(store, [V0_STABLE, job(1, "v1")], deployment(AutoRevert=True), [alloc("a1", False)])
    commits = record(store)
    update = StatusUpdate(DEP_ID, "failed", "Failed due to unhealthy allocations", revert_to=0)
    out = StateTriggers(store).update_deployment_status(update, terminal_error="x")
    (commit,) = commits
    assert commit.msg_type == "DeploymentStatusUpdateRequestType"
    assert tables(commit) >= {DEPLOYMENTS, JOBS, JOB_VERSIONS, EVALS}
    snap = store.snapshot()
    assert snap.get(JOBS, ("default", "web"))["Version"] == 2
    assert snap.get(JOBS, ("default", "web"))["TaskGroups"][0]["Tasks"][0]["Env"] == {"R": "v0"}
    assert snap.get(DEPLOYMENTS, (DEP_ID,))["Status"] == "failed"
    evaluation = snap.get(EVALS, (out.eval_id,))
    assert (evaluation["TriggeredBy"], evaluation["DeploymentID"]) == ("deployment-watcher", DEP_ID)
    assert out.response()["RevertedJobVersion"] == 0
    with pytest.raises(RPCError, match="can't fail terminal deployment"):
        StateTriggers(store).update_deployment_status(
            update, terminal_error="can't fail terminal deployment"
        )


def test_no_revert_when_a_newer_version_already_exists(store: StateStore) -> None:
    load(store, [V0_STABLE, job(1, "v1"), job(2, "v2")], deployment(), [alloc("a1", False)])
    update = StatusUpdate(DEP_ID, "failed", "Failed due to unhealthy allocations", revert_to=0)
    out = StateTriggers(store).update_deployment_status(update, terminal_error="x")
    assert out.reverted_job_version is None
    assert store.snapshot().get(JOBS, ("default", "web"))["Version"] == 2


def test_promote_refused_with_nomads_multierror(store: StateStore) -> None:
    dep = deployment(DesiredCanaries=1, PlacedCanaries=["c1"])
    load(store, [V0_STABLE, job(1, "v1")], dep, [alloc("c1", None, canary=True)])
    with pytest.raises(RPCError) as err:
        StateTriggers(store).promote(DEP_ID, True, ())
    assert err.value.message == (
        '1 error occurred:\n\t* Task group "app" has 0/1 healthy allocations\n\n'
    )


def test_promote_writes_deployment_canaries_and_eval_in_one_promotion(store: StateStore) -> None:
    dep = deployment(DesiredCanaries=1, PlacedCanaries=["c1"], ProgressDeadline=60 * 10**9)
    dep["StatusDescription"] = "Deployment is running but requires manual promotion"
    load(store, [V0_STABLE, job(1, "v1")], dep, [alloc("c1", True, canary=True)])
    commits = record(store)
    out = StateTriggers(store).promote(DEP_ID, False, ["app"])
    (commit,) = commits
    assert commit.msg_type == "DeploymentPromoteRequestType"
    assert tables(commit) >= {DEPLOYMENTS, ALLOCS, EVALS}
    snap = store.snapshot()
    d = snap.get(DEPLOYMENTS, (DEP_ID,))
    assert d["TaskGroups"]["app"]["Promoted"] is True
    assert d["StatusDescription"] == "Deployment is running"
    assert d["TaskGroups"]["app"]["RequireProgressBy"] != "0001-01-01T00:00:00Z"
    assert snap.get(ALLOCS, ("c1",))["DeploymentStatus"]["Canary"] is False
    assert out.eval_id and snap.get(EVALS, (out.eval_id,)) is not None


def test_manual_health_counts_once_and_fails_in_the_same_write(store: StateStore) -> None:
    load(store, [V0_STABLE, job(1, "v1")], deployment(), [alloc("a1"), alloc("a2")])
    commits = record(store)
    triggers = StateTriggers(store)
    triggers.set_alloc_health(DEP_ID, ["a1"], [], None)
    failure = StatusUpdate(DEP_ID, "failed", "Failed due to unhealthy allocations")
    triggers.set_alloc_health(DEP_ID, [], ["a2"], failure)
    assert [c.msg_type for c in commits] == ["DeploymentAllocHealthRequestType"] * 2
    d = store.snapshot().get(DEPLOYMENTS, (DEP_ID,))
    state = d["TaskGroups"]["app"]
    assert (state["HealthyAllocs"], state["UnhealthyAllocs"], d["Status"]) == (1, 1, "failed")
    with pytest.raises(RPCError, match="terminal deployment"):
        triggers.set_alloc_health(DEP_ID, ["a1"], [], None)


def test_manual_health_rejects_foreign_allocations(store: StateStore) -> None:
    load(store, [V0_STABLE, job(1, "v1")], deployment(), [alloc("a1")])
    with pytest.raises(RPCError, match='unknown allocation "zz"'):
        StateTriggers(store).set_alloc_health(DEP_ID, ["zz"], [], None)
