"""The deployment watcher's decisions, each through a real watcher thread reading a real
in-memory state store and writing to a call-counting fake DeploymentTriggers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from agent.deployments.watcher_support import (
    DEP_ID,
    FakeEvals,
    FakeTriggers,
    S,
    alloc,
    deployment,
    job,
    load,
)

from nomadpaas.agent.server.deploymentwatcher import deployment_watcher as dw
from nomadpaas.agent.server.deploymentwatcher.decisions import StatusUpdate, View, decide
from nomadpaas.agent.server.errors import RPCError
from nomadpaas.agent.server.state.state_store import StateStore
from nomadpaas.agent.structs.alloc import ns_to_rfc3339

QUIET_S = 0.3  # how long "nothing happens" is watched for
WAIT_S = 5.0


@pytest.fixture
def store() -> Iterator[StateStore]:
    s = StateStore(None)
    try:
        yield s
    finally:
        s.close()


def run_watcher(store: StateStore, wait_for_call: bool = True) -> tuple[FakeTriggers, FakeEvals]:
    triggers, evals = FakeTriggers(), FakeEvals()
    w = dw.DeploymentWatcher(store, triggers, evals, DEP_ID)
    w.start()
    try:
        if wait_for_call:
            deadline = time.monotonic() + WAIT_S
            while not (triggers.calls or evals.added) and time.monotonic() < deadline:
                triggers.event.wait(0.05)
        else:
            time.sleep(QUIET_S)
    finally:
        w.stop()  # it exits at its next wake-up; closing the store wakes it at once
    return triggers, evals


def only_status(triggers: FakeTriggers) -> StatusUpdate:
    assert [c[0] for c in triggers.calls] == ["status"], triggers.calls
    update: StatusUpdate = triggers.calls[0][1][0]
    return update


V0_STABLE = job(0, "v0", stable=True)


def test_watcher_set_alloc_health_unhealthy_rollback(store: StateStore) -> None:
    load(store, [V0_STABLE, job(1, "v1")], deployment(AutoRevert=True), [alloc("a1", False)])
    update = only_status(run_watcher(store)[0])
    assert update == StatusUpdate(
        DEP_ID,
        "failed",
        "Failed due to unhealthy allocations - rolling back to job version 0",
        revert_to=0,
    )


def test_watcher_unhealthy_without_auto_revert_fails_plainly(store: StateStore) -> None:
    load(store, [V0_STABLE, job(1, "v1")], deployment(), [alloc("a1", False)])
    update = only_status(run_watcher(store)[0])
    assert (update.description, update.revert_to) == ("Failed due to unhealthy allocations", None)


def test_watcher_rollback_noop_when_stable_spec_is_the_same(store: StateStore) -> None:
    load(store, [V0_STABLE, job(1, "v0")], deployment(AutoRevert=True), [alloc("a1", False)])
    update = only_status(run_watcher(store)[0])
    assert update.description == (
        "Failed due to unhealthy allocations - not rolling back to stable job version 0 "
        "as current job has same specification"
    )
    assert update.revert_to is None


def test_watcher_rollback_without_stable_version(store: StateStore) -> None:
    load(store, [job(0, "v0"), job(1, "v1")], deployment(AutoRevert=True), [alloc("a1", False)])
    update = only_status(run_watcher(store)[0])
    assert update.description == (
        "Failed due to unhealthy allocations - no stable job version to auto revert to"
    )


def test_watcher_unhealthy_with_progress_deadline_allows_replacement(store: StateStore) -> None:
    j = job(1, "v1")
    j["TaskGroups"][0]["ReschedulePolicy"] = {"Attempts": 3, "Interval": 600 * S}
    far = ns_to_rfc3339(time.time_ns() + 600 * S)
    load(
        store,
        [V0_STABLE, j],
        deployment(ProgressDeadline=600 * S, RequireProgressBy=far),
        [{**alloc("a1", False, client_status="failed"), "Job": j}],
    )
    triggers, _ = run_watcher(store)
    assert triggers.calls == [("reschedule", ("a1",))]


def test_watcher_unhealthy_without_reschedule_attempts_fails_at_once(store: StateStore) -> None:
    # Nomad #10465: a canary that can be neither restarted nor rescheduled must not
    # stall the deployment until a deadline that may never come.
    far = ns_to_rfc3339(time.time_ns() + 600 * S)
    load(
        store,
        [V0_STABLE, job(1, "v1")],
        deployment(ProgressDeadline=600 * S, RequireProgressBy=far),
        [alloc("a1", False, client_status="failed")],
    )
    assert only_status(run_watcher(store)[0]).status == "failed"


def test_watcher_auto_promote_counts_healthy_canaries(store: StateStore) -> None:
    # Nomad #8150: the replaced canary "c0" stays in PlacedCanaries; count, don't compare.
    dep = deployment(
        AutoPromote=True, DesiredCanaries=1, PlacedCanaries=["c0", "c1"], HealthyAllocs=1
    )
    allocs = [
        alloc("c0", False, canary=True, desired="stop", client_status="failed"),
        alloc("c1", True, canary=True),
    ]
    load(store, [V0_STABLE, job(1, "v1")], dep, allocs)
    triggers, evals = run_watcher(store)
    assert triggers.calls == [("promote", (DEP_ID, True, ()))]
    assert evals.added == []  # the promotion writes its own evaluation


def test_watcher_no_auto_promote_without_enough_healthy_canaries(store: StateStore) -> None:
    dep = deployment(AutoPromote=True, DesiredCanaries=2, PlacedCanaries=["c1", "c2"])
    load(
        store,
        [V0_STABLE, job(1, "v1")],
        dep,
        [alloc("c1", True, canary=True, index=3), alloc("c2", None, canary=True, index=3)],
        [{"ID": "e0", "JobID": "web", "Namespace": "default", "CreateIndex": 4}],
    )
    triggers, evals = run_watcher(store, wait_for_call=False)
    assert triggers.calls == [] and evals.added == []


def test_watcher_no_auto_promote_when_paused(store: StateStore) -> None:
    dep = deployment("paused", AutoPromote=True, DesiredCanaries=1, PlacedCanaries=["c1"])
    evals = [{"ID": "e0", "JobID": "web", "Namespace": "default", "CreateIndex": 9}]
    load(store, [V0_STABLE, job(1, "v1")], dep, [alloc("c1", True, canary=True)], evals)
    triggers, added = run_watcher(store, wait_for_call=False)
    assert triggers.calls == [] and added.added == []


def test_watcher_progress_deadline_fails_and_reverts(store: StateStore) -> None:
    passed = ns_to_rfc3339(time.time_ns() - S)
    dep = deployment(ProgressDeadline=5 * S, RequireProgressBy=passed, AutoRevert=True)
    load(store, [V0_STABLE, job(1, "v1")], dep, [alloc("a1"), alloc("a2")])
    update = only_status(run_watcher(store)[0])
    assert update.description == "Failed due to progress deadline - rolling back to job version 0"
    assert update.revert_to == 0


def test_watcher_progress_deadline_waits_for_the_clock(store: StateStore) -> None:
    soon = ns_to_rfc3339(time.time_ns() + S // 2)
    dep = deployment(ProgressDeadline=5 * S, RequireProgressBy=soon)
    load(store, [V0_STABLE, job(1, "v1")], dep, [alloc("a1")])
    started = time.monotonic()
    update = only_status(run_watcher(store)[0])
    assert update.description == "Failed due to progress deadline"
    assert time.monotonic() - started >= 0.4  # not before the deadline


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("paused", {}),  # a paused deployment never fails by deadline
        ("running", {"HealthyAllocs": 2}),  # enough healthy allocations already
        ("running", {"DesiredCanaries": 1, "HealthyAllocs": 1}),  # canaries wait for a person
    ],
)
def test_watcher_progress_deadline_spares(
    store: StateStore, status: str, state: dict[str, Any]
) -> None:
    passed = ns_to_rfc3339(time.time_ns() - S)
    dep = deployment(status, ProgressDeadline=5 * S, RequireProgressBy=passed, **state)
    evals = [{"ID": "e0", "JobID": "web", "Namespace": "default", "CreateIndex": 9}]
    load(store, [V0_STABLE, job(1, "v1")], dep, [alloc("a1", True)], evals)
    triggers, added = run_watcher(store, wait_for_call=False)
    assert triggers.calls == [] and added.added == []


def test_watcher_healthy_alloc_newer_than_latest_eval_creates_one(store: StateStore) -> None:
    evals = [{"ID": "e0", "JobID": "web", "Namespace": "default", "CreateIndex": 4}]
    load(store, [V0_STABLE, job(1, "v1")], deployment(), [alloc("a1", True, index=7)], evals)
    triggers, added = run_watcher(store)
    assert triggers.calls == []
    assert [(e["TriggeredBy"], e["DeploymentID"]) for e in added.added] == [
        ("deployment-watcher", DEP_ID)
    ]


def test_decide_no_eval_when_latest_eval_saw_the_health() -> None:
    view = View(deployment(), [alloc("a1", True, index=7)], job(1, "v1"), [], 8)
    assert decide(view, time.time_ns()).create_eval is False
    view = View(deployment(), [alloc("a1", True, index=9)], job(1, "v1"), [], 8)
    assert decide(view, time.time_ns()).create_eval is True


def test_set_alloc_health_api(store: StateStore) -> None:
    load(store, [V0_STABLE, job(1, "v1")], deployment(AutoRevert=True), [alloc("a1"), alloc("a2")])
    triggers = FakeTriggers()
    with pytest.raises(RPCError, match="must specify at least one"):
        dw.set_alloc_health(store, triggers, DEP_ID, [], [])
    dw.set_alloc_health(store, triggers, DEP_ID, ["a1"], [])
    dw.set_alloc_health(store, triggers, DEP_ID, [], ["a2"])
    assert triggers.calls[0] == ("health", (("a1",), (), None))
    failure = triggers.calls[1][1][2]
    assert failure.revert_to == 0
    assert failure.description.endswith(" - rolling back to job version 0")


def test_fail_and_pause_api(store: StateStore) -> None:
    load(store, [V0_STABLE, job(1, "v1")], deployment(), [alloc("a1")])
    triggers = FakeTriggers()
    dw.fail(store, triggers, DEP_ID)
    dw.pause(store, triggers, DEP_ID, True)
    dw.pause(store, triggers, DEP_ID, False)
    (fail, fail_err, _, _), (pause, pause_err, pause_eval, _), (resume, resume_err, _, reset) = [
        c[1] for c in triggers.calls
    ]
    assert (fail.description, fail.revert_to, fail_err) == (
        "Deployment marked as failed",
        None,
        "can't fail terminal deployment",
    )
    assert (pause.status, pause.description, pause_eval) == (
        "paused",
        "Deployment is paused",
        False,
    )
    assert pause_err == "can't pause terminal deployment"
    assert (resume.status, resume_err, reset) == (
        "running",
        "can't resume terminal deployment",
        True,
    )
    with pytest.raises(RPCError, match="deployment not found"):
        dw.fail(store, triggers, "nope")
