"""Deployment scenarios against the real agent over python-nomad, step by step: a first
run, a canary update with auto_promote, then a failing update that auto-reverts."""

from __future__ import annotations

from agent.deployments.deploy_support import (
    GROUP,
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


def test_first_run_then_canary_auto_promote_then_failed_update_rolls_back(
    agent: ServerProcess,
) -> None:
    n = client(agent)

    # (a) First run of a service job: a deployment, no canaries, successful, v0 stable.
    register(n, service_job("v0"))
    d0 = deployment_of_version(n, "web", 0)
    assert d0["Status"] == "running"
    assert d0["StatusDescription"] == "Deployment is running"
    s0 = group_state(d0)
    assert (s0["DesiredTotal"], s0["DesiredCanaries"], s0["PlacedCanaries"]) == (2, 0, None)
    assert stable_flags(n, "web") == {0: False}
    d0 = wait_status(n, d0["ID"], "successful")
    assert d0["StatusDescription"] == "Deployment completed successfully"
    s0 = group_state(d0)
    assert (s0["PlacedAllocs"], s0["HealthyAllocs"], s0["UnhealthyAllocs"]) == (2, 2, 0)
    assert stable_flags(n, "web") == {0: True}
    v0_ids = {a["ID"] for a in running(n, "web")}
    assert len(v0_ids) == 2

    # (b) Canary update (canary = count, auto_promote): canaries run beside the old
    # allocations, turn healthy, get promoted; the old ones stop; v1 stable.
    canary_update = update_block(Canary=2, AutoPromote=True, AutoRevert=True)
    register(n, service_job("v1", update=canary_update))
    d1 = deployment_of_version(n, "web", 1)
    assert d1["StatusDescription"] in (
        "Deployment is running pending automatic promotion",
        "Deployment completed successfully",  # a very fast machine
    )
    s1 = group_state(d1)
    assert (s1["DesiredCanaries"], s1["DesiredTotal"], s1["AutoPromote"]) == (2, 2, True)

    def canaries_beside_old() -> bool:
        live = running(n, "web")
        return len(live) == 4 and v0_ids <= {a["ID"] for a in live}

    wait_for(canaries_beside_old, "2 canaries running beside the 2 old allocations")
    d1 = wait_status(n, d1["ID"], "successful")
    s1 = group_state(d1)
    assert s1["Promoted"] is True
    assert len(s1["PlacedCanaries"]) == 2
    assert (s1["PlacedAllocs"], s1["HealthyAllocs"], s1["UnhealthyAllocs"]) == (2, 2, 0)
    by_id = {a["ID"]: a for a in allocs(n, "web")}
    for alloc_id in v0_ids:
        assert by_id[alloc_id]["DesiredStatus"] == "stop"
        assert by_id[alloc_id]["DesiredDescription"] == "alloc not needed due to job update"
    for alloc_id in s1["PlacedCanaries"]:
        assert by_id[alloc_id]["DeploymentStatus"]["Canary"] is False  # promoted
        assert by_id[alloc_id]["DeploymentStatus"]["Healthy"] is True
    assert stable_flags(n, "web") == {0: True, 1: True}
    v1_ids = set(s1["PlacedCanaries"])

    # (c) An update whose task exits at once: its canaries turn unhealthy, the
    # deployment fails and auto-reverts to v1 (as v3); v1's allocations never stop.
    register(n, service_job("v2", command="/bin/sh", args=["-c", "exit 3"], update=canary_update))
    d2 = deployment_of_version(n, "web", 2)
    d2 = wait_status(n, d2["ID"], "failed")
    assert d2["StatusDescription"] == (
        "Failed due to unhealthy allocations - rolling back to job version 1"
    )
    s2 = group_state(d2)
    assert s2["UnhealthyAllocs"] >= 1 and s2["HealthyAllocs"] == 0 and not s2["Promoted"]
    d3 = deployment_of_version(n, "web", 3)
    job = n.job.get_job("web")
    assert job["Version"] == 3
    assert job["TaskGroups"][0]["Tasks"][0]["Env"] == {"RELEASE": "v1"}
    d3 = wait_status(n, d3["ID"], "successful")
    s3 = group_state(d3)
    assert (s3["DesiredCanaries"], s3["HealthyAllocs"]) == (0, 2)  # in place: no canaries
    assert {a["ID"] for a in running(n, "web")} == v1_ids
    flags = stable_flags(n, "web")
    assert flags[1] is True and flags[2] is False and flags[3] is True
    by_id = {a["ID"]: a for a in allocs(n, "web")}
    for alloc_id in s2["PlacedCanaries"]:
        assert by_id[alloc_id]["DeploymentStatus"]["Healthy"] is False
        events = [e["Type"] for e in by_id[alloc_id]["TaskStates"]["srv"]["Events"]]
        assert "Alloc Unhealthy" in events
    assert all(by_id[i]["DesiredStatus"] == "run" for i in v1_ids)
    assert GROUP in d3["TaskGroups"]
