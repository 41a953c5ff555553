"""Builds reconciler inputs from the compact JSON cases in cases/ (shared by the tests)."""

from __future__ import annotations

import copy
from typing import Any

from nomadpaas.agent.structs.alloc import new_allocation, new_task_state, ns_to_rfc3339
from nomadpaas.agent.structs.job import canonicalize, server_fields

T0_NS = 1_700_000_000 * 1_000_000_000  # a fixed "now" origin for cases


def base_job(job_type: str = "service", count: int = 3, **over: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "ID": "web",
        "Type": job_type,
        "TaskGroups": [
            {
                "Name": "app",
                "Count": count,
                "Tasks": [{"Name": "srv", "Driver": "raw_exec", "Config": {"command": "/bin/app"}}],
            }
        ],
    }
    job.update(over)
    return job


def versioned(raw: dict[str, Any], version: int) -> dict[str, Any]:
    """A stored job at `version`: JobModifyIndex 10*(version+1), CreateIndex 10."""
    job = server_fields(canonicalize(raw), now_ns=T0_NS, index=10 * (version + 1), version=version)
    job["CreateIndex"] = 10
    return job


def apply_patch(raw: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply {"dotted.path": value} edits; list indexes are numbers in the path."""
    out = copy.deepcopy(raw)
    for dotted, value in patch.items():
        target: Any = out
        keys = [int(k) if k.isdigit() else k for k in dotted.split(".")]
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return out


def build_jobs(case: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(current job or None when purged, previous version) of a case."""
    spec = case.get("job", {})
    raw = base_job(spec.get("type", "service"), spec.get("count", 3))
    previous = versioned(apply_patch(raw, spec.get("previous_patch", {})), 0)
    if spec.get("purged"):
        return None, previous
    current_raw = apply_patch(raw, spec.get("patch", {}))
    version = 1 if "previous_patch" in spec or spec.get("new_version") else 0
    current = versioned(current_raw, version)
    if spec.get("stop"):
        current["Stop"] = True
    return current, previous


def build_alloc(
    spec: dict[str, Any], current: dict[str, Any] | None, previous: dict[str, Any]
) -> dict[str, Any]:
    job = previous if spec.get("version") == "previous" or current is None else current
    group = spec.get("group", "app")
    alloc = new_allocation(
        alloc_id=spec["id"],
        eval_id="e0",
        job=job,
        group=group,
        name=spec.get("name", f"web.{group}[{spec.get('index', 0)}]"),
        node_id="n1",
        node_name="local",
        now_ns=T0_NS,
        deployment_id=spec.get("deployment", ""),
        canary=spec.get("canary", False),
    )
    alloc["DesiredStatus"] = spec.get("desired", "run")
    alloc["ClientStatus"] = spec.get("client", "running")
    if "healthy" in spec:
        alloc["DeploymentStatus"] = {
            **(alloc["DeploymentStatus"] or {}),
            "Healthy": spec["healthy"],
        }
        alloc["DeploymentStatus"].setdefault("Canary", False)
    finished = spec.get("finished_at_s")
    if finished is not None or alloc["ClientStatus"] in ("complete", "failed"):
        state = new_task_state()
        state["State"] = "dead"
        state["Failed"] = alloc["ClientStatus"] == "failed"
        state["FinishedAt"] = ns_to_rfc3339(T0_NS + int(finished or 0) * 1_000_000_000)
        alloc["TaskStates"] = {"srv": state}
    if "reschedule_events_s" in spec:
        alloc["RescheduleTracker"] = {
            "Events": [
                {
                    "RescheduleTime": T0_NS + s * 1_000_000_000,
                    "PrevAllocID": "x",
                    "PrevNodeID": "n1",
                    "Delay": d,
                }
                for s, d in spec["reschedule_events_s"]
            ],
            "LastReschedule": "",
        }
    alloc["FollowupEvalID"] = spec.get("followup_eval", "")
    return alloc


def build_deployment(
    spec: dict[str, Any] | None, current: dict[str, Any] | None
) -> dict[str, Any] | None:
    if spec is None:
        return None
    groups = {}
    for name, state in spec.get("groups", {}).items():
        groups[name] = {
            "AutoRevert": False,
            "AutoPromote": False,
            "ProgressDeadline": 600_000_000_000,
            "RequireProgressBy": "0001-01-01T00:00:00Z",
            "Promoted": False,
            "PlacedCanaries": None,
            "DesiredCanaries": 0,
            "DesiredTotal": 0,
            "PlacedAllocs": 0,
            "HealthyAllocs": 0,
            "UnhealthyAllocs": 0,
            **state,
        }
    return {
        "ID": spec.get("id", "d1"),
        "Namespace": "default",
        "JobID": "web",
        "JobVersion": spec.get("job_version", (current or {}).get("Version", 0)),
        "JobCreateIndex": 10,
        "JobModifyIndex": 0,
        "JobSpecModifyIndex": 0,
        "IsMultiregion": False,
        "TaskGroups": groups,
        "Status": spec.get("status", "running"),
        "StatusDescription": spec.get("description", "Deployment is running"),
        "EvalPriority": 50,
        "CreateIndex": 1,
        "ModifyIndex": 1,
        "CreateTime": T0_NS,
        "ModifyTime": T0_NS,
    }
