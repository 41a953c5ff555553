"""Job scaling and dispatch: `Job.Scale` (a count change as a new version, plus a
scaling event) and `Job.Dispatch` (a child of a parameterized job); mirrors the Scale
and Dispatch handlers of nomad/job_endpoint.go.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from nomadpaas.agent.server.errors import RPCError
from nomadpaas.agent.server.job_register import (
    MSG_JOB_REGISTER,
    Upserted,
    create_job_eval,
    upsert_job,
)
from nomadpaas.agent.server.job_summary import is_parameterized
from nomadpaas.agent.server.state import lookups
from nomadpaas.agent.server.state.frozen import thaw
from nomadpaas.agent.server.state.schema import JOBS, SCALING_EVENTS
from nomadpaas.agent.server.state.state_store import Row, StateStore, Txn
from nomadpaas.agent.structs.deployment import deployment_active
from nomadpaas.agent.structs.evaluation import TRIGGER_JOB_SCALING
from nomadpaas.agent.structs.job import JOB_TYPE_SYSTEM, dispatched_job, lookup_group
from nomadpaas.agent.structs.job_validate import validate_dispatch

MSG_SCALING_EVENT = "ScalingEventRegisterRequestType"
JOB_TRACKED_SCALING_EVENTS = 20  # per group, newest first (structs.JobTrackedScalingEvents)


def _record_event(txn: Txn, namespace: str, job_id: str, group: str, event: dict[str, Any]) -> None:
    row = txn.get(SCALING_EVENTS, (namespace, job_id))
    events: dict[str, Any] = (
        thaw(row) if row is not None else {"ScalingEvents": {}, "ModifyIndex": 0}
    )
    per_group = [event, *events["ScalingEvents"].get(group, [])][:JOB_TRACKED_SCALING_EVENTS]
    events["ScalingEvents"][group] = per_group
    events["ModifyIndex"] = txn.index
    txn.put(SCALING_EVENTS, (namespace, job_id), events)


def scale(
    store: StateStore,
    namespace: str,
    job_id: str,
    group_name: str,
    count: int | None,
    *,
    message: str = "",
    error: bool = False,
    meta: dict[str, Any] | None = None,
    job_modify_index: int = 0,
) -> dict[str, Any]:
    """Job.Scale: the HTTP layer has checked the body (400s); this checks the job."""

    def txn_fn(txn: Txn) -> tuple[Upserted | None, Row]:
        job = txn.get(JOBS, (namespace, job_id))
        if job is None:
            raise RPCError(f'job "{job_id}" not found', 404)
        group = lookup_group(job, group_name)
        if group is None:
            raise RPCError(
                f'task group "{group_name}" specified for scaling does not exist in job', 400
            )
        if job_modify_index and int(job["JobModifyIndex"]) != job_modify_index:
            raise RPCError(
                f"Enforcing job modify index {job_modify_index}: job exists with conflicting "
                f"job modify index: {job['JobModifyIndex']}"
            )
        upserted: Upserted | None = None
        if count is not None:
            _check_count(job, group, count)
            latest = lookups.latest_deployment(txn, namespace, job_id, job["CreateIndex"])
            if deployment_active(latest):
                raise RPCError("job scaling blocked due to active deployment", 400)
            spec = thaw(job)
            for g in spec["TaskGroups"]:
                if g["Name"] == group_name:
                    g["Count"] = count
            upserted = upsert_job(txn, spec, trusted=True)
            upserted.eval = create_job_eval(txn, upserted.job, triggered_by=TRIGGER_JOB_SCALING)
        event = {
            "Time": time.time_ns(),
            "Count": count,
            "PreviousCount": int(group.get("Count") or 0),
            "Message": message,
            "Error": error,
            "Meta": meta,
            "EvalID": upserted.eval["ID"] if upserted and upserted.eval is not None else None,
            "CreateIndex": txn.index,
        }
        _record_event(txn, namespace, job_id, group_name, event)
        return upserted, job

    msg = MSG_JOB_REGISTER if count is not None else MSG_SCALING_EVENT
    (upserted, job), index = store.write(msg, txn_fn)
    if upserted is None:
        return {
            "EvalID": "",
            "EvalCreateIndex": 0,
            "JobModifyIndex": job["ModifyIndex"],
            "Warnings": "",
            "Index": index,
        }
    stored = upserted.job
    return {
        "EvalID": upserted.eval["ID"] if upserted.eval is not None else "",
        "EvalCreateIndex": upserted.eval["CreateIndex"] if upserted.eval is not None else 0,
        "JobModifyIndex": stored["JobModifyIndex"] if upserted.changed else stored["ModifyIndex"],
        "Warnings": "",
        "Index": index,
    }


def _check_count(job: Row, group: Row, count: int) -> None:
    if job.get("Type") == JOB_TYPE_SYSTEM and count > 1:
        raise RPCError(f'jobs of type "{JOB_TYPE_SYSTEM}" can only be scaled between 0 and 1', 400)
    policy = group.get("Scaling")
    if not policy:
        return
    high, low = policy.get("Max"), policy.get("Min")
    if high is not None and count > int(high):
        raise RPCError(
            f"group count was greater than scaling policy maximum: {count} > {high}", 400
        )
    if low is not None and count < int(low):
        raise RPCError(f"group count was less than scaling policy minimum: {count} < {low}", 400)


def dispatch(
    store: StateStore,
    namespace: str,
    parent_id: str,
    *,
    payload: bytes | None,
    meta: dict[str, str] | None,
    id_prefix_template: str = "",
    priority: int | None = None,
    idempotency_token: str = "",
) -> dict[str, Any]:
    """Job.Dispatch: a child job of a parameterized parent, with its own evaluation."""

    def txn_fn(txn: Txn) -> tuple[Row, Row | None]:
        parent = txn.get(JOBS, (namespace, parent_id))
        if parent is None:
            raise RPCError("parameterized job not found")
        if not is_parameterized(parent):
            raise RPCError(f'Specified job "{parent_id}" is not a parameterized job')
        if parent.get("Stop"):
            raise RPCError(f'Specified job "{parent_id}" is stopped')
        errs = validate_dispatch(
            parent, payload, meta, priority if priority else int(parent["Priority"])
        )
        if errs:
            raise RPCError(errs[0])
        if idempotency_token:
            for job in txn.list(JOBS, (namespace,)):
                if (
                    job.get("ParentID") == parent_id
                    and job.get("DispatchIdempotencyToken") == idempotency_token
                ):
                    return job, None
        child = dispatched_job(
            thaw(parent),
            payload,
            meta,
            now_ns=time.time_ns(),
            suffix_hex=uuid.uuid4().hex[:8],
            id_prefix_template=id_prefix_template,
            priority=priority,
            idempotency_token=idempotency_token,
        )
        upserted = upsert_job(txn, child, trusted=True)
        return upserted.job, create_job_eval(txn, upserted.job)

    (child, evaluation), index = store.write(MSG_JOB_REGISTER, txn_fn)
    return {
        "DispatchedJobID": child["ID"],
        "EvalID": evaluation["ID"] if evaluation is not None else "",
        "EvalCreateIndex": evaluation["CreateIndex"] if evaluation is not None else 0,
        "JobCreateIndex": child["CreateIndex"],
        "Index": index,
    }
