"""Plan apply: checks a scheduler's plan against the latest state and commits it in one
write (message type `PlanResult`); mirrors nomad/plan_apply.go + the UpsertPlanResults
part of nomad/state/state_store.go.

One node, one writer: the only conflict left to catch is two plans taking the same host
port (or a reserved port a live alloc already holds). Such a plan is rejected whole,
like Nomad rejects a node that no longer fits, and the scheduler retries on fresh state.

In the same write: stopped allocs get DesiredStatus `stop`; new allocs get their indexes
and the replaced alloc its `NextAllocation`; in-place updates replace the alloc; the new
deployment is inserted and its `PlacedAllocs`/`RequireProgressBy` counted; deployment
status updates are applied, a `successful` one marking that job version `Stable`; the
job's summary and Status are recomputed.
"""

from __future__ import annotations

import time
from typing import Any

from nomadpaas.agent.scheduler.ports import ports_in_use
from nomadpaas.agent.scheduler.scheduler import Plan, PlanResult
from nomadpaas.agent.server.job_summary import refresh_job
from nomadpaas.agent.server.state.frozen import freeze_shared, thaw
from nomadpaas.agent.server.state.schema import ALLOCS, DEPLOYMENTS, JOB_VERSIONS, JOBS, version_key
from nomadpaas.agent.server.state.state_store import StateStore, Txn
from nomadpaas.agent.structs.alloc import (
    ALLOC_CLIENT_LOST,
    ALLOC_CLIENT_UNKNOWN,
    ALLOC_DESIRED_STOP,
    ZERO_TIME,
    alloc_terminal,
    ns_to_rfc3339,
)
from nomadpaas.agent.structs.deployment import DEPLOYMENT_STATUS_SUCCESSFUL

MSG_PLAN_RESULT = "PlanResult"


def apply_plan(store: StateStore, plan: Plan) -> PlanResult:
    """Commit `plan` (or reject it); blocks on fsync, so call it from a thread."""
    result, index = store.write(MSG_PLAN_RESULT, lambda txn: _apply(txn, plan))
    if not result.rejected:
        result.alloc_index = index
    return result


def _apply(txn: Txn, plan: Plan) -> PlanResult:
    if _port_conflict(txn, plan):
        return PlanResult(refresh_index=max(txn.index - 1, 1))
    now = time.time_ns()
    jobs: set[tuple[str, str]] = set()
    for update in plan.node_update:
        alloc = txn.get(ALLOCS, (update["ID"],))
        if alloc is None:
            continue
        a = dict(alloc)  # shallow: the embedded Job stays frozen and shared
        a["DesiredStatus"] = ALLOC_DESIRED_STOP
        a["DesiredDescription"] = update["DesiredDescription"]
        if update.get("ClientStatus"):
            a["ClientStatus"] = update["ClientStatus"]
        _touch(a, txn.index, now)
        txn.put(ALLOCS, (a["ID"],), a)
        jobs.add((a["Namespace"], a["JobID"]))
    deployments: dict[str, dict[str, Any]] = {}
    if plan.deployment is not None:
        d = thaw(plan.deployment)
        old = txn.get(DEPLOYMENTS, (d["ID"],))
        d["CreateIndex"] = old["CreateIndex"] if old is not None else txn.index
        deployments[d["ID"]] = d
    memo: dict[int, tuple[Any, Any]] = {}  # placements share resources: frozen once
    for alloc in plan.node_allocation:
        a = dict(alloc)
        old = txn.get(ALLOCS, (a["ID"],))
        if old is not None:
            _keep_client_fields(a, old)
        else:
            a["CreateIndex"] = txn.index
            a["CreateTime"] = a.get("CreateTime") or now
            if a.get("PreviousAllocation"):
                _link_previous(txn, a["PreviousAllocation"], a["ID"], now)
        _touch(a, txn.index, now)
        _count_placement(txn, deployments, old, a, now)
        txn.put(ALLOCS, (a["ID"],), freeze_shared(a, memo))
        jobs.add((a["Namespace"], a["JobID"]))
    for update in plan.deployment_updates:
        d = deployments.get(update["DeploymentID"])
        if d is None:
            row = txn.get(DEPLOYMENTS, (update["DeploymentID"],))
            if row is None:
                continue
            d = deployments[update["DeploymentID"]] = thaw(row)
        d["Status"] = update["Status"]
        d["StatusDescription"] = update["StatusDescription"]
        if update["Status"] == DEPLOYMENT_STATUS_SUCCESSFUL:
            mark_stable(txn, d["Namespace"], d["JobID"], int(d["JobVersion"]), True)
    for d in deployments.values():
        d["ModifyIndex"] = txn.index
        d["ModifyTime"] = now
        txn.put(DEPLOYMENTS, (d["ID"],), d)
        jobs.add((d["Namespace"], d["JobID"]))
    for namespace, job_id in sorted(jobs):
        refresh_job(txn, namespace, job_id)
    return PlanResult(
        node_allocation=list(plan.node_allocation), node_update=list(plan.node_update)
    )


def _touch(alloc: dict[str, Any], index: int, now: int) -> None:
    alloc["ModifyIndex"] = index
    alloc["AllocModifyIndex"] = index
    alloc["ModifyTime"] = now


def _port_conflict(txn: Txn, plan: Plan) -> bool:
    new = [a for a in plan.node_allocation if txn.get(ALLOCS, (a["ID"],)) is None]
    if not any(ports_in_use([a]) for a in new):
        return False  # nothing new holds a port: no walk over every allocation
    stopping = {u["ID"] for u in plan.node_update}
    live = [a for a in txn.list(ALLOCS) if not alloc_terminal(a) and a["ID"] not in stopping]
    used = ports_in_use(live)
    for alloc in new:
        mine = ports_in_use([alloc])
        if mine & used:
            return True
        used |= mine
    return False


def _link_previous(txn: Txn, prev_id: str, next_id: str, now: int) -> None:
    prev = txn.get(ALLOCS, (prev_id,))
    if prev is None:
        return
    p = dict(prev)
    p["NextAllocation"] = next_id
    p["ModifyIndex"] = txn.index
    p["ModifyTime"] = now
    txn.put(ALLOCS, (prev_id,), p)


def _count_placement(
    txn: Txn,
    deployments: dict[str, dict[str, Any]],
    old: Any,
    alloc: dict[str, Any],
    now: int,
) -> None:
    """PlacedAllocs +1 when an alloc joins a deployment; start its progress clock."""
    dep_id = alloc.get("DeploymentID") or ""
    if not dep_id or (old is not None and old.get("DeploymentID") == dep_id):
        return
    d = deployments.get(dep_id)
    if d is None:
        row = txn.get(DEPLOYMENTS, (dep_id,))
        if row is None:
            return
        d = deployments[dep_id] = thaw(row)
    state = d["TaskGroups"].get(alloc["TaskGroup"])
    if state is None:
        return
    state["PlacedAllocs"] = int(state.get("PlacedAllocs") or 0) + 1
    deadline = int(state.get("ProgressDeadline") or 0)
    if deadline > 0 and state.get("RequireProgressBy") in (None, "", ZERO_TIME):
        state["RequireProgressBy"] = ns_to_rfc3339(now + deadline)


def mark_stable(txn: Txn, namespace: str, job_id: str, version: int, stable: bool) -> bool:
    """Set `Stable` on one job version (and on the job when it is that version)."""
    key = version_key(namespace, job_id, version)
    row = txn.get(JOB_VERSIONS, key)
    if row is None:
        return False
    if bool(row.get("Stable")) != stable:
        v = thaw(row)
        v["Stable"] = stable
        txn.put(JOB_VERSIONS, key, v)
    job = txn.get(JOBS, (namespace, job_id))
    if job is not None and job.get("Version") == version and bool(job.get("Stable")) != stable:
        j = thaw(job)
        j["Stable"] = stable
        j["ModifyIndex"] = txn.index
        txn.put(JOBS, (namespace, job_id), j)
    return True


def _keep_client_fields(alloc: dict[str, Any], current: Any) -> None:
    """An updated alloc was copied from the scheduler's snapshot; the client may have
    reported since. Keep what the client owns (as upsertAllocsImpl does)."""
    alloc["TaskStates"] = current.get("TaskStates")
    alloc["NetworkStatus"] = current.get("NetworkStatus")
    if alloc.get("ClientStatus") not in (ALLOC_CLIENT_LOST, ALLOC_CLIENT_UNKNOWN):
        alloc["ClientStatus"] = current.get("ClientStatus")
        alloc["ClientDescription"] = current.get("ClientDescription")
    if alloc.get("DeploymentID") == current.get("DeploymentID"):
        alloc["DeploymentStatus"] = current.get("DeploymentStatus")
