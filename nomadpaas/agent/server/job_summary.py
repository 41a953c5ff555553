"""Keeps each job's derived state in step with its allocations, evaluations and
deployments: the JobSummary counters and the job's Status; mirrors the summary and
`setJobStatus` parts of nomad/state/state_store.go.

Every write that touches a job's allocs, evals or deployments ends with
`refresh_job(txn, namespace, job_id)`. Counters come from the state store's `job_allocs`
tally, which the store keeps in step with the allocations on every commit (so they never
drift, and a refresh costs the rows a write changed, not all of the job's); `Queued` is
the one counter only the scheduler knows, so it is kept from the stored summary and set
by `set_queued` when an evaluation completes.
"""

from __future__ import annotations

from typing import Any

from nomadpaas.agent.server.state import lookups
from nomadpaas.agent.server.state.frozen import thaw
from nomadpaas.agent.server.state.schema import ALLOCS, JOB_SUMMARIES, JOBS, TALLY_JOB_ALLOCS
from nomadpaas.agent.server.state.state_store import Row, Txn
from nomadpaas.agent.structs.alloc import alloc_terminal
from nomadpaas.agent.structs.deployment import deployment_active
from nomadpaas.agent.structs.evaluation import eval_terminal
from nomadpaas.agent.structs.job import (
    JOB_STATUS_DEAD,
    JOB_STATUS_PENDING,
    JOB_STATUS_RUNNING,
    JOB_TYPE_SYSTEM,
)

# ClientStatus → the TaskGroupSummary counter it feeds.
_COUNTER_OF_STATUS = {
    "pending": "Starting",
    "running": "Running",
    "complete": "Complete",
    "failed": "Failed",
    "lost": "Lost",
    "unknown": "Unknown",
}
_GROUP_COUNTERS = ("Queued", "Complete", "Failed", "Running", "Starting", "Lost", "Unknown")


def is_parameterized(job: Any) -> bool:
    """A parameterized parent (its dispatched children are ordinary batch jobs)."""
    return job.get("ParameterizedJob") is not None and not job.get("Dispatched")


def is_periodic(job: Any) -> bool:
    """A periodic parent (its launches carry a ParentID)."""
    return job.get("Periodic") is not None and not job.get("ParentID")


def is_parent(job: Any) -> bool:
    return is_parameterized(job) or is_periodic(job)


def empty_summary(job: Any, index: int) -> dict[str, Any]:
    return {
        "JobID": job["ID"],
        "Namespace": job["Namespace"],
        "Summary": {
            g["Name"]: dict.fromkeys(_GROUP_COUNTERS, 0) for g in job.get("TaskGroups") or []
        },
        "Children": {"Pending": 0, "Running": 0, "Dead": 0},
        "CreateIndex": index,
        "ModifyIndex": index,
    }


# (TaskGroup, ClientStatus, DesiredStatus) → how many allocations of the job's current
# incarnation are in it: the state store's `job_allocs` tally, so a refresh costs the
# allocations a write changed, not every allocation of the job.
Counts = dict[tuple[Any, Any, Any], int]


def incarnation_counts(txn: Txn, job: Row) -> Counts:
    """The allocation counts of the job's current incarnation (its CreateIndex)."""
    tally = txn.tally(ALLOCS, TALLY_JOB_ALLOCS, (job["Namespace"], job["ID"]))
    create = job.get("CreateIndex")
    return {(g, c, d): n for (ci, g, c, d), n in tally.items() if ci == create and n > 0}


def job_status(txn: Txn, job: Row, counts: Counts | None = None) -> str:
    """The job's Status by the first matching rule of nomad-api.md §1.2; `counts` are the
    job's `incarnation_counts` when the caller has them already."""
    ns, job_id, create = job["Namespace"], job["ID"], job.get("CreateIndex")
    if job.get("Type") == JOB_TYPE_SYSTEM or is_parent(job):
        return JOB_STATUS_DEAD if job.get("Stop") else JOB_STATUS_RUNNING
    if any(deployment_active(d) for d in lookups.deployments_by_job(txn, ns, job_id, create)):
        return JOB_STATUS_RUNNING
    if counts is None:
        counts = incarnation_counts(txn, job)
    if any(not alloc_terminal({"ClientStatus": c, "DesiredStatus": d}) for _, c, d in counts):
        return JOB_STATUS_RUNNING
    evals = lookups.evals_by_job(txn, ns, job_id)
    if any(not eval_terminal(e) for e in evals):
        return JOB_STATUS_PENDING
    if evals or job.get("Stop"):
        return JOB_STATUS_DEAD
    return JOB_STATUS_PENDING


def _group_counts(job: Row, old: Row | None, counts: Counts) -> dict[str, dict[str, int]]:
    groups: dict[str, dict[str, int]] = {}
    old_groups = (old or {}).get("Summary") or {}
    for g in job.get("TaskGroups") or []:
        counters = dict.fromkeys(_GROUP_COUNTERS, 0)
        counters["Queued"] = int((old_groups.get(g["Name"]) or {}).get("Queued", 0))
        groups[g["Name"]] = counters
    for (name, status, _), n in counts.items():
        counter = _COUNTER_OF_STATUS.get(status)
        group = groups.get(name)
        if counter is not None and group is not None:
            group[counter] += n
    return groups


def _children(txn: Txn, job: Row) -> dict[str, int]:
    out = {"Pending": 0, "Running": 0, "Dead": 0}
    if not is_parent(job):
        return out
    for child in txn.list(JOBS, (job["Namespace"],)):
        if child.get("ParentID") == job["ID"]:
            key = {"running": "Running", "dead": "Dead"}.get(child.get("Status", ""), "Pending")
            out[key] += 1
    return out


def refresh_job(txn: Txn, namespace: str, job_id: str) -> None:
    """Recompute the summary and Status of one job (and its parent's Children)."""
    job = txn.get(JOBS, (namespace, job_id))
    if job is None:
        return
    old = txn.get(JOB_SUMMARIES, (namespace, job_id))
    summary = thaw(old) if old is not None else empty_summary(job, txn.index)
    counts = incarnation_counts(txn, job)
    summary["Summary"] = _group_counts(job, old, counts)
    summary["Children"] = _children(txn, job)
    if old is None or thaw(old) != {**summary, "ModifyIndex": old["ModifyIndex"]}:
        summary["ModifyIndex"] = txn.index
        txn.put(JOB_SUMMARIES, (namespace, job_id), summary)
    status = job_status(txn, job, counts)
    if status != job.get("Status"):
        updated = thaw(job)
        updated["Status"] = status
        updated["ModifyIndex"] = txn.index
        txn.put(JOBS, (namespace, job_id), updated)
        if job.get("ParentID"):
            refresh_job(txn, namespace, job["ParentID"])


def set_queued(txn: Txn, namespace: str, job_id: str, queued: dict[str, int]) -> None:
    """Record the scheduler's QueuedAllocations in the summary (evaluation completed)."""
    old = txn.get(JOB_SUMMARIES, (namespace, job_id))
    if old is None:
        return
    summary = thaw(old)
    changed = False
    for group, n in queued.items():
        counters = summary["Summary"].get(group)
        if counters is not None and counters.get("Queued") != n:
            counters["Queued"] = n
            changed = True
    if changed:
        summary["ModifyIndex"] = txn.index
        txn.put(JOB_SUMMARIES, (namespace, job_id), summary)
