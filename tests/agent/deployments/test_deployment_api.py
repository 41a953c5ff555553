"""python-nomad's `deployment.*` calls against the real agent, unchanged: get,
allocations, pause/resume, manual allocation health (it sends `UnHealthyAllocationIDs`),
fail, and the endpoints' errors verbatim."""

from __future__ import annotations

import json

import httpx
import nomad
import pytest
from agent.deployments.deploy_support import (
    S,
    deployment_of_version,
    group_state,
    register,
    service_job,
    stable_flags,
    update_block,
    wait_for,
    wait_status,
)
from agent.jobs_support import client
from testsupport import ServerProcess

MANUAL = update_block(HealthCheck="manual", MinHealthyTime=0, HealthyDeadline=S)
RESPONSE_KEYS = {
    "EvalID",
    "EvalCreateIndex",
    "DeploymentModifyIndex",
    "RevertedJobVersion",
    "Index",
}


def test_pause_resume_manual_health_and_failure(agent: ServerProcess) -> None:
    n = client(agent)
    register(n, service_job("v0", count=2, update={**MANUAL, "ProgressDeadline": 60 * S}))
    d = deployment_of_version(n, "web", 0)
    ids = wait_for(
        lambda: (
            [a["ID"] for a in n.deployment.get_deployment_allocations(d["ID"])]
            if len(n.deployment.get_deployment_allocations(d["ID"])) == 2
            else None
        ),
        "two allocations in the deployment",
    )
    assert any(x["ID"] == d["ID"] for x in n.deployments.get_deployments())

    paused = n.deployment.pause_deployment(d["ID"], True)
    assert set(paused) >= RESPONSE_KEYS
    assert paused["EvalID"] == "" and paused["EvalCreateIndex"] == 0  # pause: no eval
    d = n.deployment.get_deployment(d["ID"])
    assert (d["Status"], d["StatusDescription"]) == ("paused", "Deployment is paused")
    before = group_state(d)["RequireProgressBy"]

    resumed = n.deployment.pause_deployment(d["ID"], False)
    assert resumed["EvalID"]  # resume: an eval
    d = n.deployment.get_deployment(d["ID"])
    assert (d["Status"], d["StatusDescription"]) == ("running", "Deployment is running")
    assert group_state(d)["RequireProgressBy"] > before  # the deadline starts over

    out = n.deployment.deployment_allocation_health(d["ID"], healthy_allocations=[ids[0]])
    assert set(out) >= RESPONSE_KEYS and out["EvalID"]
    d = n.deployment.get_deployment(d["ID"])
    assert (group_state(d)["HealthyAllocs"], group_state(d)["UnhealthyAllocs"]) == (1, 0)
    assert d["Status"] == "running"

    # python-nomad spells it UnHealthyAllocationIDs: the case-insensitive decoder matters.
    out = n.deployment.deployment_allocation_health(d["ID"], unhealthy_allocations=[ids[1]])
    assert out["RevertedJobVersion"] is None
    d = n.deployment.get_deployment(d["ID"])
    assert (d["Status"], d["StatusDescription"]) == (
        "failed",
        "Failed due to unhealthy allocations",
    )
    assert (group_state(d)["HealthyAllocs"], group_state(d)["UnhealthyAllocs"]) == (1, 1)
    alloc = n.allocation.get_allocation(ids[1])
    assert alloc["DeploymentStatus"]["Healthy"] is False

    for call, text in (
        (lambda: n.deployment.fail_deployment(d["ID"]), "can't fail terminal deployment"),
        (lambda: n.deployment.pause_deployment(d["ID"], True), "can't pause terminal deployment"),
        (
            lambda: n.deployment.pause_deployment(d["ID"], False),
            "can't resume terminal deployment",
        ),
    ):
        with pytest.raises(nomad.api.exceptions.BaseNomadException) as err:
            call()
        assert (err.value.nomad_resp.status_code, err.value.nomad_resp.text) == (500, text)


def test_fail_api_marks_failed_and_auto_reverts(agent: ServerProcess) -> None:
    n = client(agent)
    register(n, service_job("v0", count=1))
    wait_status(n, deployment_of_version(n, "web", 0)["ID"], "successful")
    register(
        n, service_job("v1", count=1, update={**MANUAL, "AutoRevert": True, "ProgressDeadline": 0})
    )
    d1 = deployment_of_version(n, "web", 1)
    out = n.deployment.fail_deployment(d1["ID"])
    assert out["RevertedJobVersion"] == 0 and out["EvalID"]
    d1 = n.deployment.get_deployment(d1["ID"])
    assert d1["Status"] == "failed"
    assert d1["StatusDescription"] == "Deployment marked as failed - rolling back to job version 0"
    job = n.job.get_job("web")
    assert job["Version"] == 2 and job["TaskGroups"][0]["Tasks"][0]["Env"] == {"RELEASE": "v0"}
    wait_status(n, deployment_of_version(n, "web", 2)["ID"], "successful")
    assert stable_flags(n, "web") == {0: True, 1: False, 2: True}

    # Event types follow the write that made the change (nomad-api.md §6).
    expected = {
        ("Deployment", "failed", "DeploymentStatusUpdate"),
        ("Job", "v2", "DeploymentStatusUpdate"),  # the auto-revert's new version
        ("Job", "v2 stable", "PlanResult"),  # Stable lands in the successful plan's write
        ("Deployment", "successful", "PlanResult"),
    }
    assert expected <= event_types(agent, ["Deployment:web", "Job:web"], expected)


def event_types(
    agent: ServerProcess, topics: list[str], wanted: set[tuple[str, str, str]]
) -> set[tuple[str, str, str]]:
    """(topic, what, event type) of the buffered events, replayed from `index=0`; stops
    once `wanted` are all seen or the stream goes quiet (read timeout)."""
    seen: set[tuple[str, str, str]] = set()
    params = [("index", "0"), *(("topic", t) for t in topics)]
    try:
        with httpx.stream("GET", f"{agent.url}/v1/event/stream", params=params, timeout=3) as r:
            for line in r.iter_lines():
                for e in (json.loads(line) if line.strip() else {}).get("Events") or []:
                    if e["Topic"] == "Deployment":
                        seen.add(("Deployment", e["Payload"]["Deployment"]["Status"], e["Type"]))
                    elif e["Topic"] == "Job":
                        j = e["Payload"]["Job"]
                        what = f"v{j['Version']}" + (" stable" if j["Stable"] else "")
                        seen.add(("Job", what, e["Type"]))
                if wanted <= seen:
                    break
    except httpx.ReadTimeout:
        pass
    return seen


def test_write_endpoint_errors(agent: ServerProcess) -> None:
    http = httpx.Client(base_url=agent.url, timeout=10)
    try:
        r = http.post("/v1/deployment/promote/abc", json={"All": True})
        assert (r.status_code, r.text) == (400, "DeploymentID must be specified")
        r = http.post("/v1/deployment/promote/abc", json={"DeploymentID": "xyz", "All": True})
        assert (r.status_code, r.text) == (400, "Deployment ID does not match")
        r = http.put("/v1/deployment/pause/abc", json={"deploymentid": "xyz", "Pause": True})
        assert (r.status_code, r.text) == (400, "Deployment ID does not match")
        r = http.post("/v1/deployment/allocation-health/abc", json={"DeploymentID": "abc"})
        assert (r.status_code, r.text) == (
            500,
            "must specify at least one healthy/unhealthy allocation ID",
        )
        r = http.post("/v1/deployment/fail/abc")
        assert (r.status_code, r.text) == (404, "deployment not found")
        r = http.get("/v1/deployment/fail/abc")
        assert (r.status_code, r.text) == (405, "Invalid method")
    finally:
        http.close()
