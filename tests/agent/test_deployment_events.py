"""The event stream of a canary update with auto_promote against the real agent: the
JobRegistered → PlanResult → AllocationUpdated → DeploymentPromotion → … → successful
sequence with Nomad's FilterKeys, and `topic=Deployment:<job>` seeing only that job."""

from __future__ import annotations

from typing import Any

import httpx
from agent.deployments.deploy_support import (
    deployment_of_version,
    register,
    service_job,
    update_block,
    wait_status,
)
from agent.jobs_support import client
from agent.stream.stream_support import StreamReader, summary
from testsupport import ServerProcess

JOB = "web"
OTHER = "other"
STREAM_WAIT_S = 45.0
CANARY_UPDATE = update_block(Canary=2, AutoPromote=True, AutoRevert=True)


def open_stream(agent: ServerProcess, params: list[tuple[str, str]]) -> StreamReader:
    reader = StreamReader(agent.url, params)
    assert reader.next_line() == {}, "the first line must be {}"
    return reader


def first(events: list[dict[str, Any]], pred: Any, what: str) -> int:
    """Position of the first event matching `pred`."""
    for i, e in enumerate(events):
        if pred(e):
            return i
    raise AssertionError(f"no {what} in {summary(events)}")


def is_successful(e: dict[str, Any]) -> bool:
    return bool(
        e["Topic"] == "Deployment"
        and e["Payload"]["Deployment"]["JobVersion"] == 1
        and e["Payload"]["Deployment"]["Status"] == "successful"
    )


def test_canary_auto_promote_event_sequence_and_deployment_filter(agent: ServerProcess) -> None:
    n = client(agent)
    register(n, service_job("v0", update=CANARY_UPDATE))
    wait_status(n, deployment_of_version(n, JOB, 0)["ID"], "successful")
    now = int(httpx.get(f"{agent.url}/v1/jobs").headers["X-Nomad-Index"])

    topics = [("topic", f"{t}:{JOB}") for t in ("Job", "Allocation", "Deployment", "Evaluation")]
    web = open_stream(agent, [("index", str(now + 1)), *topics])
    deployments_only = open_stream(agent, [("index", str(now + 1)), ("topic", f"Deployment:{JOB}")])
    try:
        # Another job with its own deployment, written at the same time as web's update.
        register(n, service_job("v0", job_id=OTHER, count=1))
        out = register(n, service_job("v1", update=CANARY_UPDATE))
        events = web.events_until(is_successful, STREAM_WAIT_S)
        d_events = deployments_only.events_until(is_successful, STREAM_WAIT_S)
    finally:
        web.close()
        deployments_only.close()
    print(*summary(events), sep="\n")

    # Every event is web's; FilterKeys as in Nomad.
    d1 = events[-1]["Payload"]["Deployment"]
    for e in events:
        p = e["Payload"]
        if e["Topic"] == "Job":
            assert e["Key"] == JOB and e["FilterKeys"] is None
        elif e["Topic"] == "Allocation":
            a = p["Allocation"]
            assert e["Key"] == a["ID"] and a["Job"] is None
            assert e["FilterKeys"] == [JOB, a["DeploymentID"]]
        elif e["Topic"] == "Evaluation":
            ev = p["Evaluation"]
            assert e["Key"] == ev["ID"] and e["FilterKeys"] == [JOB, ev["DeploymentID"]]
        else:
            assert e["Topic"] == "Deployment", e
            assert e["Key"] == p["Deployment"]["ID"] and e["FilterKeys"] == [JOB]
    assert all(e["Index"] > now for e in events)

    def alloc_of_d1(e: dict[str, Any]) -> bool:
        return bool(
            e["Topic"] == "Allocation" and e["Payload"]["Allocation"]["DeploymentID"] == d1["ID"]
        )

    # 1. JobRegistered: the Job (v1) and its evaluation, at the register's index.
    i_job = first(events, lambda e: e["Topic"] == "Job", "Job event")
    assert events[i_job]["Type"] == "JobRegistered"
    assert events[i_job]["Payload"]["Job"]["Version"] == 1
    assert events[i_job]["Index"] == out["JobModifyIndex"]
    i_eval = first(events, lambda e: e["Key"] == out["EvalID"], "the register's evaluation")
    assert events[i_eval]["Type"] == "JobRegistered"
    assert events[i_eval]["Index"] == out["JobModifyIndex"]

    # 2. PlanResult: the deployment created, two canaries placed.
    i_created = first(events, lambda e: e["Topic"] == "Deployment", "Deployment created")
    created = events[i_created]
    assert created["Type"] == "PlanResult" and created["Payload"]["Deployment"]["ID"] == d1["ID"]
    assert created["Payload"]["Deployment"]["Status"] == "running"
    placed = [e for e in events if alloc_of_d1(e) and e["Type"] == "PlanResult"]
    canary_ids = {e["Key"] for e in placed}
    assert canary_ids == set(d1["TaskGroups"]["app"]["PlacedCanaries"]) and len(canary_ids) == 2
    for e in placed:
        assert e["Payload"]["Allocation"]["DeploymentStatus"]["Canary"] is True
        assert e["Index"] == created["Index"]  # the same plan write
    assert i_job < i_created

    # 3. AllocationUpdated: canaries running, then healthy; the counters move with them.
    def healthy_canary(e: dict[str, Any]) -> bool:
        if not alloc_of_d1(e):
            return False
        ds = e["Payload"]["Allocation"]["DeploymentStatus"] or {}
        return ds.get("Healthy") is True and ds.get("Canary") is True

    updated = [e for e in events if alloc_of_d1(e) and e["Type"] == "AllocationUpdated"]
    assert any(e["Payload"]["Allocation"]["ClientStatus"] == "running" for e in updated)
    i_healthy = [i for i, e in enumerate(events) if healthy_canary(e)]
    assert {events[i]["Key"] for i in i_healthy} == canary_ids
    assert all(events[i]["Type"] == "AllocationUpdated" for i in i_healthy)
    counters = [
        e["Payload"]["Deployment"]["TaskGroups"]["app"]["HealthyAllocs"]
        for e in events
        if e["Topic"] == "Deployment" and e["Type"] == "AllocationUpdated"
    ]
    assert counters == sorted(counters) and 2 in counters

    # 4. DeploymentPromotion after both canaries are healthy: the Deployment promoted,
    # the canaries' Canary flag cleared, and an evaluation.
    promo = [e for e in events if e["Type"] == "DeploymentPromotion"]
    assert promo and min(events.index(e) for e in promo) > max(i_healthy)
    assert len({e["Index"] for e in promo}) == 1
    promo_d = [e for e in promo if e["Topic"] == "Deployment"]
    assert len(promo_d) == 1 and promo_d[0]["Payload"]["Deployment"]["TaskGroups"]["app"][
        "Promoted"
    ] is True  # fmt: skip
    promo_allocs = {e["Key"]: e for e in promo if e["Topic"] == "Allocation"}
    assert set(promo_allocs) == canary_ids
    assert all(
        e["Payload"]["Allocation"]["DeploymentStatus"]["Canary"] is False
        for e in promo_allocs.values()
    )
    assert any(e["Topic"] == "Evaluation" for e in promo)
    i_promo = events.index(promo[0])

    # 5. PlanResult after promotion: the old allocations stopped.
    stopped = [
        e
        for e in events[i_promo:]
        if e["Topic"] == "Allocation"
        and e["Type"] == "PlanResult"
        and e["Payload"]["Allocation"]["DesiredStatus"] == "stop"
    ]
    assert len(stopped) == 2 and not {e["Key"] for e in stopped} & canary_ids
    for e in stopped:
        assert e["Payload"]["Allocation"]["DesiredDescription"] == (
            "alloc not needed due to job update"
        )

    # 6. Last: the deployment successful and the Job Stable, in the same write.
    done = events[-1]
    assert done["Type"] in ("PlanResult", "DeploymentStatusUpdate")
    assert done["Payload"]["Deployment"]["StatusDescription"] == "Deployment completed successfully"
    stable = [
        e
        for e in events
        if e["Topic"] == "Job" and e["Index"] == done["Index"] and e["Payload"]["Job"]["Stable"]
    ]
    assert stable and stable[0]["Type"] == done["Type"]
    assert stable[0]["Payload"]["Job"]["Version"] == 1
    assert events.index(stable[0]) > i_promo

    # The order of the phases, by first occurrence of each type.
    order: list[str] = []
    for e in events:
        if not order or order[-1] != e["Type"]:
            order.append(e["Type"])
    print(order)
    phases = ["JobRegistered", "PlanResult", "AllocationUpdated", "DeploymentPromotion"]
    assert [t for t in dict.fromkeys(order) if t in phases] == phases

    # The Deployment-only subscriber: web's deployment events only, the same ones.
    assert d_events and all(
        e["Topic"] == "Deployment" and e["FilterKeys"] == [JOB] for e in d_events
    )
    assert [(e["Index"], e["Type"]) for e in d_events] == [
        (e["Index"], e["Type"]) for e in events if e["Topic"] == "Deployment"
    ]
    other_d = deployment_of_version(n, OTHER, 0)  # other's deployment exists, filtered out
    assert all(e["Key"] != other_d["ID"] for e in d_events)
