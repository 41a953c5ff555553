"""Response shapes of the scheduling endpoints (every field nomad-api.md lists, with its
JSON type), the allocation/evaluation/deployment endpoints, and blocking queries."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from agent.jobs_support import NO_DEPLOYMENTS, client, live_allocs, raw_exec_job, register
from testsupport import ServerProcess

STR, INT, BOOL, DICT, LIST = str, int, bool, dict, list
NULL = type(None)

JOB_LIST_STUB = {
    "ID": STR, "ParentID": STR, "Name": STR, "Namespace": STR, "Datacenters": LIST,
    "NodePool": STR, "Multiregion": NULL, "Type": STR, "Priority": INT, "Periodic": BOOL,
    "ParameterizedJob": BOOL, "Stop": BOOL, "Status": STR, "StatusDescription": STR,
    "JobSummary": DICT, "CreateIndex": INT, "ModifyIndex": INT, "JobModifyIndex": INT,
    "SubmitTime": INT,
}  # fmt: skip
ALLOC_LIST_STUB = {
    "ID": STR, "EvalID": STR, "Name": STR, "Namespace": STR, "NodeID": STR, "NodeName": STR,
    "JobID": STR, "JobType": STR, "JobVersion": INT, "TaskGroup": STR, "DesiredStatus": STR,
    "DesiredDescription": STR, "ClientStatus": STR, "ClientDescription": STR,
    "DesiredTransition": DICT, "TaskStates": (DICT, NULL), "DeploymentStatus": (DICT, NULL),
    "FollowupEvalID": STR, "NextAllocation": STR, "RescheduleTracker": (DICT, NULL),
    "PreemptedAllocations": (LIST, NULL), "PreemptedByAllocation": STR, "CreateIndex": INT,
    "ModifyIndex": INT, "CreateTime": INT, "ModifyTime": INT,
}  # fmt: skip
EVALUATION = {
    "ID": STR, "Namespace": STR, "Priority": INT, "Type": STR, "TriggeredBy": STR, "JobID": STR,
    "JobModifyIndex": INT, "NodeID": STR, "DeploymentID": STR, "Status": STR,
    "StatusDescription": STR, "Wait": INT, "WaitUntil": STR, "NextEval": STR,
    "PreviousEval": STR, "BlockedEval": STR, "FailedTGAllocs": (DICT, NULL),
    "QueuedAllocations": (DICT, NULL), "SnapshotIndex": INT, "CreateIndex": INT,
    "ModifyIndex": INT, "CreateTime": INT, "ModifyTime": INT,
}  # fmt: skip
SUMMARY_COUNTERS = ("Queued", "Complete", "Failed", "Running", "Starting", "Lost", "Unknown")
DEPLOYMENT = {
    "ID": STR, "Namespace": STR, "JobID": STR, "JobVersion": INT, "JobModifyIndex": INT,
    "JobSpecModifyIndex": INT, "JobCreateIndex": INT, "IsMultiregion": BOOL, "TaskGroups": DICT,
    "Status": STR, "StatusDescription": STR, "EvalPriority": INT, "CreateIndex": INT,
    "ModifyIndex": INT, "CreateTime": INT, "ModifyTime": INT,
}  # fmt: skip


def check(obj: dict[str, Any], shape: dict[str, Any], what: str) -> None:
    for key, kind in shape.items():
        assert key in obj, f"{what} lacks {key}"
        assert isinstance(obj[key], kind), f"{what}.{key} is {type(obj[key]).__name__}"
        if kind is INT:
            assert not isinstance(obj[key], bool), f"{what}.{key} is a bool"


def test_list_stub_and_evaluation_shapes(agent: ServerProcess) -> None:
    n = client(agent)
    out = register(n, raw_exec_job())
    (stub,) = n.jobs.get_jobs()
    check(stub, JOB_LIST_STUB, "JobListStub")
    assert set(stub["JobSummary"]["Summary"]["app"]) == set(SUMMARY_COUNTERS)
    assert set(stub["JobSummary"]["Children"]) == {"Pending", "Running", "Dead"}
    allocs = n.job.get_allocations("web")
    for alloc in allocs:
        check(alloc, ALLOC_LIST_STUB, "AllocListStub")
        assert "AllocatedResources" not in alloc
    check(n.evaluation.get_evaluation(out["EvalID"]), EVALUATION, "Evaluation")
    for evaluation in n.evaluations.get_evaluations():
        check(evaluation, EVALUATION, "Evaluation")
    (deployment,) = n.deployments.get_deployments()
    check(deployment, DEPLOYMENT, "Deployment")
    state = deployment["TaskGroups"]["app"]
    for key in ("AutoRevert", "AutoPromote", "ProgressDeadline", "RequireProgressBy",
                "Promoted", "PlacedCanaries", "DesiredCanaries", "DesiredTotal", "PlacedAllocs",
                "HealthyAllocs", "UnhealthyAllocs"):  # fmt: skip
        assert key in state, key
    full = n.allocation.get_allocation(allocs[0]["ID"])
    for key in ("Job", "PreviousAllocation", "AllocModifyIndex", "NetworkStatus", "Metrics"):
        assert key in full, key
    register_keys = {"EvalID", "EvalCreateIndex", "JobModifyIndex", "Warnings", "Index",
                     "LastContact", "KnownLeader", "NextToken"}  # fmt: skip
    assert register_keys <= set(out)


def test_allocation_endpoints(agent: ServerProcess) -> None:
    n = client(agent)
    out = register(n, raw_exec_job(count=2, update=NO_DEPLOYMENTS))
    allocs = n.allocations.get_allocations()
    assert len(allocs) == 2
    one = allocs[0]["ID"]
    assert [a["ID"] for a in n.allocations.get_allocations(prefix=one[:6])] == [one]
    r = httpx.get(
        f"{agent.url}/v1/allocations", params={"resources": "true", "task_states": "false"}
    )
    listed = r.json()
    assert all(a["TaskStates"] is None and a["AllocatedResources"] for a in listed)
    assert httpx.get(f"{agent.url}/v1/allocations", params={"namespace": "other"}).json() == []
    assert len(httpx.get(f"{agent.url}/v1/allocations", params={"namespace": "*"}).json()) == 2
    r = httpx.get(f"{agent.url}/v1/allocation/no-such-alloc")
    assert (r.status_code, r.text) == (404, "alloc not found")
    by_eval = n.evaluation.get_allocations(out["EvalID"])
    assert sorted(a["ID"] for a in by_eval) == sorted(a["ID"] for a in allocs)
    r = httpx.get(f"{agent.url}/v1/evaluation/no-such-eval")
    assert (r.status_code, r.text) == (404, "eval not found")
    assert [e["ID"] for e in n.evaluations.get_evaluations(prefix=out["EvalID"][:8])] == [
        out["EvalID"]
    ]
    stop = n.allocation.stop_allocation(one)
    assert set(stop) == {"EvalID", "Index"}
    stopped = n.allocation.get_allocation(one)
    assert stopped["DesiredStatus"] == "stop"
    assert n.evaluation.get_evaluation(stop["EvalID"])["TriggeredBy"] == "alloc-stop"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(live_allocs(n, "web")) < 2:
        time.sleep(0.05)
    assert len(live_allocs(n, "web")) == 2, "the stopped alloc is replaced"
    r = httpx.get(f"{agent.url}/v1/deployment/nope")
    assert (r.status_code, r.text) == (404, "deployment not found")
    r = httpx.get(f"{agent.url}/v1/job/web/deployment")
    assert (r.status_code, r.text) == (200, "null")


def test_job_list_blocks_until_a_register(agent: ServerProcess) -> None:
    first = httpx.get(f"{agent.url}/v1/jobs")
    index = int(first.headers["X-Nomad-Index"])
    result: dict[str, httpx.Response] = {}

    def poll() -> None:
        result["r"] = httpx.get(
            f"{agent.url}/v1/jobs", params={"index": index, "wait": "30s"}, timeout=60
        )

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.3)
    assert t.is_alive(), "the poll should be parked"
    n = client(agent)
    n.job.register_job("web", {"Job": raw_exec_job(update=NO_DEPLOYMENTS)})
    t.join(30)
    assert not t.is_alive()
    assert int(result["r"].headers["X-Nomad-Index"]) > index
    assert [j["ID"] for j in result["r"].json()] == ["web"]
    job = httpx.get(f"{agent.url}/v1/job/web")
    assert int(job.headers["X-Nomad-Index"]) == job.json()["ModifyIndex"]


def test_version_tags_evaluate_and_validate(agent: ServerProcess) -> None:
    n = client(agent)
    register(n, raw_exec_job(update=NO_DEPLOYMENTS))
    url = f"{agent.url}/v1/job/web/versions/golden/tag"
    r = httpx.put(url, json={"Version": 0, "Description": "known good"})
    assert r.status_code == 200, r.text
    tag = n.job.get_job("web")["VersionTag"]
    assert (tag["Name"], tag["Description"]) == ("golden", "known good")
    assert httpx.delete(url).status_code == 200
    assert n.job.get_job("web")["VersionTag"] is None
    assert httpx.delete(url).status_code == 404
    out = httpx.post(f"{agent.url}/v1/job/web/evaluate").json()
    evaluation = n.evaluation.get_evaluation(out["EvalID"])
    assert (evaluation["JobID"], evaluation["TriggeredBy"]) == ("web", "job-register")
    r = httpx.post(f"{agent.url}/v1/job/ghost/evaluate")
    assert (r.status_code, r.text) == (500, "job not found")
    good = n.validate.validate_job({"Job": raw_exec_job()}).json()
    assert (good["ValidationErrors"], good["Error"]) == (None, "")
    bad = n.validate.validate_job({"Job": raw_exec_job(count=-1)}).json()
    assert bad["Error"].startswith("1 error occurred:") and len(bad["ValidationErrors"]) == 1


def test_system_gc_removes_a_stopped_job_once_its_allocs_finished(agent: ServerProcess) -> None:
    n = client(agent)
    register(n, raw_exec_job(count=1, update=NO_DEPLOYMENTS))
    wait_eval_id = n.job.deregister_job("web")["EvalID"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        allocs = n.job.get_allocations("web")
        evaluation = n.evaluation.get_evaluation(wait_eval_id)
        if evaluation["Status"] == "complete" and all(
            a["ClientStatus"] in ("complete", "failed", "lost") for a in allocs
        ):
            break
        time.sleep(0.1)
    else:  # say what was still going on: this failed once, under load, and never again
        states = [(a["ID"][:8], a["DesiredStatus"], a["ClientStatus"]) for a in allocs]
        tasks = [s for a in allocs for s in (a["TaskStates"] or {}).values()]
        events = [[e["Type"] for e in s["Events"]] for s in tasks]
        raise AssertionError(f"stop not finished: eval {evaluation['Status']}, {states}, {events}")
    n.system.initiate_garbage_collection()
    r = httpx.get(f"{agent.url}/v1/job/web")
    assert (r.status_code, r.text) == (404, "job not found")
    assert n.allocations.get_allocations() == []
