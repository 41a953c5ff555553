"""Register → eval → generic scheduler → plan apply, in memory: placements with ports,
destructive and in-place updates, placement failures, rescheduling, versions."""

from __future__ import annotations

import time

from agent.server.sched_harness import Harness, service_job

from nomadpaas.agent.server.state.schema import DEPLOYMENTS, JOB_SUMMARIES, JOB_VERSIONS, JOBS
from nomadpaas.agent.structs.alloc import ns_to_rfc3339
from nomadpaas.agent.structs.job import canonicalize


def test_register_places_count_allocs_with_distinct_ports(h: Harness) -> None:
    out = h.register(service_job(count=3))
    evaluation = h.eval(out["EvalID"])
    assert evaluation["Status"] == "complete"
    assert evaluation["QueuedAllocations"] == {"app": 0}
    allocs = h.allocs()
    assert [a["Name"] for a in allocs] == ["web.app[0]", "web.app[1]", "web.app[2]"]
    assert {a["DesiredStatus"] for a in allocs} == {"run"}
    assert {a["ClientStatus"] for a in allocs} == {"pending"}
    ports = [a["AllocatedResources"]["Shared"]["Ports"][0]["Value"] for a in allocs]
    assert len(set(ports)) == 3 and all(20000 <= p <= 32000 for p in ports)
    summary = h.store.snapshot().get(JOB_SUMMARIES, ("default", "web"))
    assert summary["Summary"]["app"]["Starting"] == 3
    assert h.store.snapshot().get(JOBS, ("default", "web"))["Status"] == "running"
    (deployment,) = h.store.snapshot().list(DEPLOYMENTS)
    assert deployment["TaskGroups"]["app"]["DesiredTotal"] == 3
    assert deployment["TaskGroups"]["app"]["PlacedAllocs"] == 3
    assert {a["DeploymentID"] for a in allocs} == {deployment["ID"]}


def test_destructive_update_stops_old_and_places_replacements(h: Harness) -> None:
    no_deploy = {"Update": {"MaxParallel": 0}}
    h.register(service_job(count=2, **no_deploy))
    first = h.allocs()
    h.register(service_job(count=2, args=["200"], **no_deploy))
    job = h.store.snapshot().get(JOBS, ("default", "web"))
    assert job["Version"] == 1
    old = [a for a in h.allocs() if a["ID"] in {f["ID"] for f in first}]
    assert {a["DesiredStatus"] for a in old} == {"stop"}
    assert {a["DesiredDescription"] for a in old} == {"alloc is being updated due to job update"}
    new = h.allocs(live=True)
    assert [a["Name"] for a in new] == ["web.app[0]", "web.app[1]"]
    assert {a["PreviousAllocation"] for a in new} == {f["ID"] for f in first}
    assert {a["Job"]["Version"] for a in new} == {1}
    assert all(a["NextAllocation"] for a in old)


def test_count_change_is_in_place(h: Harness) -> None:
    no_deploy = {"Update": {"MaxParallel": 0}}
    h.register(service_job(count=1, **no_deploy))
    (first,) = h.allocs()
    h.register(service_job(count=3, **no_deploy))
    live = h.allocs(live=True)
    assert [a["Name"] for a in live] == ["web.app[0]", "web.app[1]", "web.app[2]"]
    kept = next(a for a in live if a["ID"] == first["ID"])
    assert kept["Job"]["Version"] == 1, "the existing alloc moved to the new version in place"
    h.register(service_job(count=1, **no_deploy))
    assert [a["ID"] for a in h.allocs(live=True)] == [first["ID"]]


def test_unchanged_spec_makes_no_version_but_a_new_eval(h: Harness) -> None:
    a = h.register(service_job())
    b = h.register(service_job())
    assert a["EvalID"] != b["EvalID"]
    assert h.store.snapshot().get(JOBS, ("default", "web"))["Version"] == 0
    assert h.eval(b["EvalID"])["Status"] == "complete"
    assert len(h.allocs()) == 2, "re-evaluating placed nothing new"


def test_unknown_driver_is_a_placement_failure_with_a_blocked_eval(h: Harness) -> None:
    job = service_job(count=2)
    job["TaskGroups"][0]["Tasks"][0]["Driver"] = "docker"
    out = h.register(job)
    evaluation = h.eval(out["EvalID"])
    assert evaluation["Status"] == "complete"
    assert evaluation["QueuedAllocations"] == {"app": 2}
    failed = evaluation["FailedTGAllocs"]["app"]
    assert failed["ConstraintFiltered"] == {"missing drivers": 1}
    assert failed["CoalescedFailures"] == 1
    blocked = h.eval(evaluation["BlockedEval"])
    assert (blocked["Status"], blocked["TriggeredBy"]) == ("blocked", "queued-allocs")
    assert h.allocs() == []
    assert h.store.snapshot().get(JOBS, ("default", "web"))["Status"] == "pending"
    # A fixed job supersedes the blocked eval.
    h.register(service_job(count=2))
    assert h.eval(blocked["ID"])["Status"] == "canceled"
    assert len(h.allocs(live=True)) == 2


def _fail(h: Harness, alloc_id: str, finished_ns: int) -> None:
    h.node_rpc.update_allocs(
        [
            {
                "ID": alloc_id,
                "ClientStatus": "failed",
                "ClientDescription": "Failed tasks",
                "TaskStates": {
                    "srv": {
                        "State": "dead", "Failed": True, "Restarts": 2,
                        "LastRestart": "0001-01-01T00:00:00Z", "StartedAt": ns_to_rfc3339(1),
                        "FinishedAt": ns_to_rfc3339(finished_ns), "Events": None,
                    }
                },
            }
        ]
    )  # fmt: skip


def test_failed_alloc_triggers_alloc_failure_eval_and_is_rescheduled(h: Harness) -> None:
    h.register(service_job(count=1, Update={"MaxParallel": 0}))
    (alloc,) = h.allocs()
    _fail(h, alloc["ID"], time.time_ns() - 3600 * 10**9)  # long past its 30 s delay
    failure_eval = h.evals()[-1]
    assert failure_eval["TriggeredBy"] == "alloc-failure"
    h.drain()
    old = next(a for a in h.allocs() if a["ID"] == alloc["ID"])
    assert old["DesiredStatus"] == "stop"
    assert old["DesiredDescription"] == "alloc was rescheduled because it failed"
    (new,) = h.allocs(live=True)
    assert new["PreviousAllocation"] == alloc["ID"]
    assert new["RescheduleTracker"]["Events"][0]["PrevAllocID"] == alloc["ID"]


def test_fresh_failure_gets_a_delayed_follow_up_eval(h: Harness) -> None:
    h.register(service_job(count=1, Update={"MaxParallel": 0}))
    (alloc,) = h.allocs()
    _fail(h, alloc["ID"], time.time_ns())
    h.drain()
    followup = [e for e in h.evals() if e["WaitUntil"] != "0001-01-01T00:00:00Z"]
    assert len(followup) == 1 and followup[0]["Status"] == "pending"
    assert h.allocs()[0]["FollowupEvalID"] == followup[0]["ID"]
    assert h.server.broker.stats().delayed == 1


def test_batch_alloc_that_completes_is_not_replaced(h: Harness) -> None:
    job = service_job(count=1, Type="batch")
    h.register(canonicalize({**job, "Update": None}))
    (alloc,) = h.allocs()
    h.node_rpc.update_allocs([{"ID": alloc["ID"], "ClientStatus": "complete"}])
    assert h.drain() == 0, "a completed batch alloc triggers no eval"
    h.jobs.evaluate("default", "web", False)
    h.drain()
    assert len(h.allocs()) == 1
    assert h.store.snapshot().get(JOBS, ("default", "web"))["Status"] == "dead"


def test_health_updates_count_and_complete_the_deployment(h: Harness) -> None:
    h.register(service_job(count=2))
    allocs = h.allocs()
    h.node_rpc.update_allocs(
        [
            {"ID": a["ID"], "ClientStatus": "running", "DeploymentStatus": {"Healthy": True}}
            for a in allocs
        ]
    )
    (deployment,) = h.store.snapshot().list(DEPLOYMENTS)
    assert deployment["TaskGroups"]["app"]["HealthyAllocs"] == 2
    h.jobs.evaluate("default", "web", False)
    h.drain()
    (deployment,) = h.store.snapshot().list(DEPLOYMENTS)
    assert deployment["Status"] == "successful"
    version = h.store.snapshot().get(JOB_VERSIONS, ("default", "web", f"{0:020d}"))
    assert version["Stable"] is True


def test_stop_alloc_replaces_it(h: Harness) -> None:
    h.register(service_job(count=1, Update={"MaxParallel": 0}))
    (alloc,) = h.allocs()
    out = h.node_rpc.stop_alloc(alloc["ID"])
    assert h.eval(out["EvalID"])["TriggeredBy"] == "alloc-stop"
    h.drain()
    (new,) = h.allocs(live=True)
    assert new["ID"] != alloc["ID"] and new["Name"] == alloc["Name"]


def test_get_client_allocs_blocks_until_the_node_changes(h: Harness) -> None:
    h.register(service_job(count=1))
    allocs, index = h.node_rpc.get_client_allocs("node-1", 0, 1)
    assert len(allocs) == 1 and allocs[0]["Job"]["ID"] == "web"
    started = time.monotonic()
    _, same_index = h.node_rpc.get_client_allocs("node-1", index, 0.3)
    assert same_index == index and time.monotonic() - started >= 0.25
    h.node_rpc.update_allocs([{"ID": allocs[0]["ID"], "ClientStatus": "running"}])
    moved, new_index = h.node_rpc.get_client_allocs("node-1", index, 5)
    assert new_index > index and moved[0]["ClientStatus"] == "running"


def test_eight_versions_keep_six(h: Harness) -> None:
    for i in range(8):
        h.jobs.register(service_job(args=[str(i)]))
    versions = h.store.snapshot().list(JOB_VERSIONS, ("default", "web"))
    assert [v["Version"] for v in versions] == [2, 3, 4, 5, 6, 7]


def test_pruning_keeps_newest_stable_and_tagged_versions(h: Harness) -> None:
    h.jobs.register(service_job(args=["0"]))
    h.jobs.stable("default", "web", 0, True)
    h.jobs.register(service_job(args=["1"]))
    h.jobs.tag_version("default", "web", "golden", 1, "keep me")
    for i in range(2, 9):
        h.jobs.register(service_job(args=[str(i)]))
    versions = [v["Version"] for v in h.store.snapshot().list(JOB_VERSIONS, ("default", "web"))]
    assert versions == [0, 1, 5, 6, 7, 8]


def test_reserved_port_is_kept_and_a_second_holder_cannot_be_placed(h: Harness) -> None:
    job = service_job(count=1)
    job["TaskGroups"][0]["Networks"] = [
        {"Mode": "host", "ReservedPorts": [{"Label": "admin", "Value": 24999, "To": -1}]}
    ]
    h.register(canonicalize(job))
    (alloc,) = h.allocs()
    assert alloc["AllocatedResources"]["Shared"]["Ports"] == (
        {"Label": "admin", "Value": 24999, "To": 24999, "HostIP": "127.0.0.1"},
    )
    assert alloc["Resources"]["Networks"][0]["IP"] == "127.0.0.1"
    out = h.register(canonicalize({**job, "ID": "other", "Name": "other"}))
    failed = h.eval(out["EvalID"])["FailedTGAllocs"]["app"]
    assert failed["DimensionExhausted"] == {"network: reserved port collision admin=24999": 1}
    assert h.allocs("other") == []


def test_delayed_follow_up_eval_runs_when_due_and_reschedules(h: Harness) -> None:
    job = service_job(count=1, Update={"MaxParallel": 0})
    job["TaskGroups"][0]["ReschedulePolicy"]["Delay"] = 5 * 10**9
    job["TaskGroups"][0]["ReschedulePolicy"]["DelayFunction"] = "constant"
    h.register(job)
    (alloc,) = h.allocs()
    _fail(h, alloc["ID"], time.time_ns() - 3 * 10**9)  # due in about 2 s
    h.drain()
    assert [a["ID"] for a in h.allocs()] == [alloc["ID"]], "not replaced before its delay"
    item = h.server.broker.dequeue(10)
    assert item is not None and item[0]["ID"] == h.allocs()[0]["FollowupEvalID"]
    h.worker.process(item[0])
    h.server.broker.ack(item[0]["ID"], item[1])
    (new,) = [a for a in h.allocs(live=True) if a["ID"] != alloc["ID"]]
    assert new["PreviousAllocation"] == alloc["ID"]
