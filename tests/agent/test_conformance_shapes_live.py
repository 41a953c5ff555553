"""Response shapes of objects produced by a real run (the client ran the tasks): full
Allocation with TaskStates and TaskEvents, AllocListStub, Evaluation, the server Job with
its canonicalized defaults (durations as int ns), JobListStub and JobSummary. Every field a
Nomad client reads is present with its Go name, JSON type and zero value (nomad-api.md §0–§3)."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any

import httpx
import nomad
from agent.jobs_support import client, wait_eval
from agent.test_conformance_client import wait_for
from agent.test_jobs_shapes import (
    ALLOC_LIST_STUB,
    BOOL,
    DICT,
    EVALUATION,
    INT,
    JOB_LIST_STUB,
    LIST,
    NULL,
    STR,
    SUMMARY_COUNTERS,
    check,
)
from testsupport import ServerProcess

NS_PER_S = 10**9
ZERO_TIME = "0001-01-01T00:00:00Z"

# The full Allocation: the stub's fields except the two it derives from `Job`, plus these.
ALLOCATION = {
    **{k: v for k, v in ALLOC_LIST_STUB.items() if k not in ("JobType", "JobVersion")},
    "Job": DICT, "Resources": (DICT, NULL), "TaskResources": (DICT, NULL),
    "AllocatedResources": DICT, "Metrics": DICT, "DeploymentID": STR,
    "PreviousAllocation": STR, "NetworkStatus": (DICT, NULL), "AllocModifyIndex": INT,
}  # fmt: skip
TASK_STATE = {
    "State": STR, "Failed": BOOL, "Restarts": INT, "LastRestart": STR, "StartedAt": STR,
    "FinishedAt": STR, "Events": LIST,
}  # fmt: skip
TASK_EVENT = {
    "Type": STR, "Time": INT, "Message": STR, "DisplayMessage": STR, "Details": (DICT, NULL),
    "FailsTask": BOOL, "RestartReason": STR, "SetupError": STR, "DriverError": STR,
    "ExitCode": INT, "Signal": INT, "KillTimeout": INT, "KillReason": STR, "StartDelay": INT,
    "DownloadError": STR, "ValidationError": STR, "DiskLimit": INT, "FailedSibling": STR,
    "VaultError": STR, "TaskSignalReason": STR, "TaskSignal": STR, "DriverMessage": STR,
    "GenericSource": STR,
}  # fmt: skip
JOB = {
    "ID": STR, "Name": STR, "Namespace": STR, "Type": STR, "Region": STR, "Priority": INT,
    "Datacenters": LIST, "NodePool": STR, "AllAtOnce": BOOL, "Constraints": (LIST, NULL),
    "Affinities": (LIST, NULL), "Spreads": (LIST, NULL), "TaskGroups": LIST,
    "Update": (DICT, NULL), "Multiregion": NULL, "Periodic": (DICT, NULL),
    "ParameterizedJob": (DICT, NULL), "Dispatched": BOOL, "DispatchIdempotencyToken": STR,
    "Payload": (STR, NULL), "Meta": (DICT, NULL), "Stop": BOOL, "ParentID": STR,
    "Status": STR, "StatusDescription": STR, "Stable": BOOL, "Version": INT,
    "SubmitTime": INT, "CreateIndex": INT, "ModifyIndex": INT, "JobModifyIndex": INT,
    "VersionTag": (DICT, NULL), "NomadTokenID": STR,
}  # fmt: skip
TASK_GROUP = {
    "Name": STR, "Count": INT, "Constraints": (LIST, NULL), "Tasks": LIST,
    "RestartPolicy": DICT, "ReschedulePolicy": (DICT, NULL), "EphemeralDisk": DICT,
    "Update": (DICT, NULL), "Migrate": (DICT, NULL), "Networks": (LIST, NULL),
    "Services": (LIST, NULL), "Meta": (DICT, NULL), "ShutdownDelay": (INT, NULL),
}  # fmt: skip
TASK = {
    "Name": STR, "Driver": STR, "User": STR, "Config": DICT, "Env": (DICT, NULL),
    "Services": (LIST, NULL), "Resources": DICT, "RestartPolicy": (DICT, NULL),
    "Meta": (DICT, NULL), "KillTimeout": INT, "LogConfig": DICT, "Artifacts": (LIST, NULL),
    "Templates": (LIST, NULL), "DispatchPayload": (DICT, NULL), "Leader": BOOL,
    "ShutdownDelay": INT, "KillSignal": STR, "Lifecycle": (DICT, NULL),
}  # fmt: skip


def rfc3339(value: str) -> datetime:
    """Go's RFC3339Nano (`2026-01-02T03:04:05.123456789Z`), nanoseconds cut to micro."""
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


def crash_job() -> dict[str, Any]:
    code = "import sys; print('bye'); sys.exit(3)"
    return {
        "ID": "crash",
        "Type": "batch",
        "TaskGroups": [
            {
                "Name": "run",
                "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
                "ReschedulePolicy": {"Attempts": 0, "Unlimited": False},
                "Tasks": [
                    {
                        "Name": "main",
                        "Driver": "raw_exec",
                        "Config": {"command": sys.executable, "args": ["-c", code]},
                    }
                ],
            }
        ],
    }


def failed_alloc(n: nomad.Nomad, job_id: str) -> dict[str, Any]:
    def check_failed() -> dict[str, Any] | None:
        stubs = [a for a in n.job.get_allocations(job_id) if a["ClientStatus"] == "failed"]
        return stubs[0] if stubs else None

    stub: dict[str, Any] = wait_for(check_failed, what=f"{job_id} failed")
    return stub


def test_allocation_task_state_and_event_shapes(agent: ServerProcess) -> None:
    n = client(agent)
    started_ns = time.time_ns()
    n.jobs.register_job({"Job": crash_job()})
    stub = failed_alloc(n, "crash")
    check(stub, ALLOC_LIST_STUB, "AllocListStub")
    alloc = n.allocation.get_allocation(stub["ID"])
    check(alloc, ALLOCATION, "Allocation")
    assert alloc["Job"]["ID"] == "crash" and alloc["Job"]["Version"] == 0
    assert started_ns <= alloc["CreateTime"] <= alloc["ModifyTime"] <= time.time_ns()
    assert alloc["DesiredTransition"] == {
        "Migrate": None, "Reschedule": None, "ForceReschedule": None, "NoShutdownDelay": None,
        "MigrateDisablePlacement": None,
    }  # fmt: skip
    assert stub["TaskStates"] == alloc["TaskStates"], "the stub carries the same task states"

    resources = alloc["AllocatedResources"]
    task_res = resources["Tasks"]["main"]
    assert task_res["Cpu"]["CpuShares"] == 100 and task_res["Memory"]["MemoryMB"] == 300
    assert resources["Shared"]["DiskMB"] == 300
    assert resources["Shared"]["Ports"] in (None, [])
    metrics = alloc["Metrics"]
    for key in ("NodesEvaluated", "NodesFiltered", "NodesExhausted", "CoalescedFailures"):
        assert isinstance(metrics[key], int), key
    assert metrics["NodesEvaluated"] == 1 and metrics["AllocationTime"] >= 0

    state = alloc["TaskStates"]["main"]
    check(state, TASK_STATE, "TaskState")
    assert (state["State"], state["Failed"], state["Restarts"]) == ("dead", True, 0)
    assert state["LastRestart"] == ZERO_TIME
    assert rfc3339(state["StartedAt"]) <= rfc3339(state["FinishedAt"])
    assert rfc3339(state["StartedAt"]).timestamp() * NS_PER_S >= started_ns - NS_PER_S
    times = []
    for event in state["Events"]:
        check(event, TASK_EVENT, f"TaskEvent {event['Type']}")
        assert event["DisplayMessage"], event["Type"]
        if event["Details"] is not None:
            assert all(isinstance(v, str) for v in event["Details"].values())
        times.append(event["Time"])
    assert times == sorted(times) and started_ns <= times[0] <= time.time_ns()
    by_type = {e["Type"]: e for e in state["Events"]}
    terminated = by_type["Terminated"]
    assert (terminated["ExitCode"], terminated["Signal"]) == (3, 0)
    assert terminated["Details"] == {"exit_code": "3", "signal": "0"}
    not_restarting = by_type["Not Restarting"]
    assert not_restarting["FailsTask"] is True
    assert not_restarting["Details"]["fails_task"] == "true"
    assert by_type["Task Setup"]["Message"] == "Building Task Directory"


def test_job_evaluation_list_stub_and_summary_shapes(agent: ServerProcess) -> None:
    n = client(agent)
    job = {
        "ID": "web",
        "TaskGroups": [
            {
                "Name": "app",
                "Networks": [{"DynamicPorts": [{"Label": "http"}]}],
                "Tasks": [
                    {
                        "Name": "srv",
                        "Driver": "raw_exec",
                        "Config": {"command": "/bin/sleep", "args": ["300"]},
                    }
                ],
            }
        ],
    }
    out = n.jobs.register_job({"Job": job})
    evaluation = wait_eval(n, out["EvalID"])
    check(evaluation, EVALUATION, "Evaluation")
    assert evaluation["QueuedAllocations"] == {"app": 0}
    assert evaluation["FailedTGAllocs"] is None
    assert (evaluation["Wait"], evaluation["WaitUntil"]) == (0, ZERO_TIME)
    wait_for(
        lambda: [a for a in n.job.get_allocations("web") if a["ClientStatus"] == "running"],
        what="web running",
    )

    server_job = n.job.get_job("web")
    check(server_job, JOB, "Job")
    assert (server_job["Datacenters"], server_job["Region"]) == (["*"], "global")
    assert server_job["Payload"] is None and server_job["Meta"] is None
    update = server_job["Update"]
    assert (update["Stagger"], update["MinHealthyTime"]) == (30 * NS_PER_S, 10 * NS_PER_S)
    assert (update["HealthyDeadline"], update["ProgressDeadline"]) == (
        300 * NS_PER_S,
        600 * NS_PER_S,
    )
    (group,) = server_job["TaskGroups"]
    check(group, TASK_GROUP, "TaskGroup")
    assert group["RestartPolicy"] == {
        "Attempts": 2, "Interval": 1800 * NS_PER_S, "Delay": 15 * NS_PER_S, "Mode": "fail",
        "RenderTemplates": False,
    }  # fmt: skip
    reschedule = group["ReschedulePolicy"]
    assert (reschedule["Delay"], reschedule["MaxDelay"]) == (30 * NS_PER_S, 3600 * NS_PER_S)
    assert (reschedule["DelayFunction"], reschedule["Unlimited"]) == ("exponential", True)
    assert group["EphemeralDisk"] == {"Sticky": False, "Migrate": False, "SizeMB": 300}
    assert group["Update"]["MinHealthyTime"] == 10 * NS_PER_S
    (port,) = group["Networks"][0]["DynamicPorts"]
    assert (port["Label"], port["Value"], port["To"]) == ("http", 0, 0)
    (task,) = group["Tasks"]
    check(task, TASK, "Task")
    assert (task["KillTimeout"], task["ShutdownDelay"], task["KillSignal"]) == (5 * NS_PER_S, 0, "")
    assert task["LogConfig"] == {"MaxFiles": 10, "MaxFileSizeMB": 10, "Disabled": False}
    assert (task["Resources"]["CPU"], task["Resources"]["MemoryMB"]) == (100, 300)

    (stub,) = n.jobs.get_jobs()
    check(stub, JOB_LIST_STUB, "JobListStub")
    assert stub["JobModifyIndex"] == server_job["JobModifyIndex"]
    assert stub["SubmitTime"] == server_job["SubmitTime"]

    summary = n.job.get_summary("web")
    check(
        summary,
        {"JobID": STR, "Namespace": STR, "Summary": DICT, "Children": DICT,
         "CreateIndex": INT, "ModifyIndex": INT},
        "JobSummary",
    )  # fmt: skip
    counters = summary["Summary"]["app"]
    assert set(counters) == set(SUMMARY_COUNTERS)
    assert all(isinstance(v, int) and not isinstance(v, bool) for v in counters.values())
    assert counters["Running"] == 1 and counters["Queued"] == 0
    assert summary["Children"] == {"Pending": 0, "Running": 0, "Dead": 0}
    assert stub["JobSummary"]["Summary"] == summary["Summary"]

    # Lists: `[]` when empty, never null; an unknown job's allocations are `[]` too.
    url = agent.url
    assert httpx.get(f"{url}/v1/jobs", params={"prefix": "zz"}).json() == []
    assert httpx.get(f"{url}/v1/job/ghost/allocations").json() == []
    assert httpx.get(f"{url}/v1/job/web/evaluations").json()[0]["ID"] == out["EvalID"]
