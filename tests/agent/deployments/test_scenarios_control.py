"""Deployment scenarios that need a hand or a clock: manual promotion (refused while the
canary is not healthy), progress-deadline failure, a newer version cancelling a running
deployment; real agent, python-nomad."""

from __future__ import annotations

import nomad
import pytest
from agent.deployments.deploy_support import (
    S,
    allocs,
    deployment_of_version,
    group_state,
    register,
    running,
    service_job,
    stable_flags,
    update_block,
    wait_for,
    wait_status,
)
from agent.jobs_support import client
from testsupport import ServerProcess

MANUAL = update_block(HealthCheck="manual", MinHealthyTime=0, HealthyDeadline=S)


def test_manual_promotion_refused_until_the_canary_is_healthy(agent: ServerProcess) -> None:
    n = client(agent)
    register(n, service_job("v0", count=1))
    wait_status(n, deployment_of_version(n, "web", 0)["ID"], "successful")
    register(n, service_job("v1", count=1, update=update_block(Canary=1, MinHealthyTime=3 * S)))
    d1 = deployment_of_version(n, "web", 1)
    assert d1["StatusDescription"] == "Deployment is running but requires manual promotion"

    with pytest.raises(nomad.api.exceptions.BaseNomadException) as refused:
        n.deployment.promote_deployment_all(d1["ID"])
    assert refused.value.nomad_resp.status_code == 500
    assert refused.value.nomad_resp.text == (
        '1 error occurred:\n\t* Task group "app" has 0/1 healthy allocations\n\n'
    )
    d1 = n.deployment.get_deployment(d1["ID"])
    assert d1["Status"] == "running" and group_state(d1)["Promoted"] is False

    def canary_healthy() -> bool:
        return group_state(n.deployment.get_deployment(d1["ID"]))["HealthyAllocs"] == 1

    wait_for(canary_healthy, "the canary to turn healthy")
    # Healthy canaries waiting for a person are not a reason to fail or to finish.
    d1 = n.deployment.get_deployment(d1["ID"])
    assert d1["Status"] == "running"
    assert d1["StatusDescription"] == "Deployment is running but requires manual promotion"
    out = n.deployment.promote_deployment_groups(d1["ID"], ["app"])
    assert set(out) >= {"EvalID", "EvalCreateIndex", "DeploymentModifyIndex", "Index"}
    assert out["EvalID"] and out["RevertedJobVersion"] is None
    d1 = wait_status(n, d1["ID"], "successful")
    assert group_state(d1)["Promoted"] is True
    assert stable_flags(n, "web") == {0: True, 1: True}
    with pytest.raises(nomad.api.exceptions.BaseNomadException) as terminal:
        n.deployment.promote_deployment_all(d1["ID"])
    assert terminal.value.nomad_resp.text == "can't promote terminal deployment"


def test_progress_deadline_expiry_fails_the_deployment(agent: ServerProcess) -> None:
    n = client(agent)
    # Manual health: nobody marks the allocation, so no progress is ever made.
    register(n, service_job("v0", count=1, update={**MANUAL, "ProgressDeadline": 2 * S}))
    d0 = deployment_of_version(n, "web", 0)
    assert d0["Status"] == "running"
    started = wait_for(
        lambda: (
            group_state(n.deployment.get_deployment(d0["ID"]))["RequireProgressBy"]
            != "0001-01-01T00:00:00Z"
        ),
        "RequireProgressBy to be set by the first placement",
    )
    assert started
    d0 = wait_status(n, d0["ID"], "failed", timeout_s=15)
    assert d0["StatusDescription"] == "Failed due to progress deadline"
    assert group_state(d0)["HealthyAllocs"] == 0
    assert stable_flags(n, "web") == {0: False}
    # Failing a deployment stops nothing that is not a canary.
    assert len(running(n, "web")) == 1


def test_newer_version_cancels_running_deployment_and_its_canaries(agent: ServerProcess) -> None:
    n = client(agent)
    register(n, service_job("v0", count=1, update=MANUAL))
    d0 = deployment_of_version(n, "web", 0)
    wait_for(lambda: len(running(n, "web")) == 1, "v0 running")
    # v1 with a canary, still unpromoted when v2 arrives.
    register(n, service_job("v1", count=1, update={**MANUAL, "Canary": 1}))
    d1 = deployment_of_version(n, "web", 1)
    cancelled = wait_status(n, d0["ID"], "cancelled")
    assert cancelled["StatusDescription"] == "Cancelled due to newer version of job"
    canary_id = wait_for(
        lambda: (group_state(n.deployment.get_deployment(d1["ID"]))["PlacedCanaries"] or [None])[0],
        "the v1 canary",
    )
    register(n, service_job("v2", count=1, update={**MANUAL, "Canary": 1}))
    d1 = wait_status(n, d1["ID"], "cancelled")
    assert d1["StatusDescription"] == "Cancelled due to newer version of job"
    d2 = deployment_of_version(n, "web", 2)
    assert d2["Status"] == "running"

    def canary_stopped() -> dict[str, object] | None:
        alloc = next(a for a in allocs(n, "web") if a["ID"] == canary_id)
        return alloc if alloc["DesiredStatus"] == "stop" else None

    stopped = canary_stopped() or wait_for(canary_stopped, "the unpromoted v1 canary stopped")
    assert stopped["DesiredDescription"] == "alloc not needed due to job update"
    assert stable_flags(n, "web") == {0: False, 1: False, 2: False}


def test_rolling_update_without_canaries_goes_on_as_allocs_turn_healthy(
    agent: ServerProcess,
) -> None:
    n = client(agent)
    register(n, service_job("v0", count=3))
    wait_status(n, deployment_of_version(n, "web", 0)["ID"], "successful")
    old = {a["ID"] for a in running(n, "web")}
    # MaxParallel 1: each replacement waits for the previous one to turn healthy, which
    # only the watcher's evaluation can notice.
    register(n, service_job("v1", count=3, update=update_block(MaxParallel=1)))
    d1 = deployment_of_version(n, "web", 1)
    d1 = wait_status(n, d1["ID"], "successful")
    s1 = group_state(d1)
    assert (s1["DesiredTotal"], s1["PlacedAllocs"], s1["HealthyAllocs"]) == (3, 3, 3)
    live = running(n, "web")
    assert len(live) == 3 and not old & {a["ID"] for a in live}
    assert all(a["JobVersion"] == 1 for a in live)
    replaced = [a for a in allocs(n, "web") if a["ID"] in old]
    assert {a["DesiredDescription"] for a in replaced} == {
        "alloc is being updated due to job update"
    }
    evals = n.job.get_evaluations("web")
    assert sum(e["TriggeredBy"] == "deployment-watcher" for e in evals) >= 2
