"""The write actions under `/v1/job/:id/`: revert, stable, scale (and its status),
plan, dispatch, evaluate, version tags; mirrors the matching handlers of
command/agent/job_endpoint.go. job_endpoint.py routes here by path suffix.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from nomadpaas.agent.http.errors import CodedError, bad_request, not_found
from nomadpaas.agent.http.job_spec import (
    DISPATCH_REQUEST,
    EVALUATE_REQUEST,
    PLAN_REQUEST,
    REVERT_REQUEST,
    SCALE_REQUEST,
    STABLE_REQUEST,
    TAG_REQUEST,
    api_job,
)
from nomadpaas.agent.http.rpc import call, require_methods, server_of, with_query_meta
from nomadpaas.agent.http.server import HTTPRequest, Reply
from nomadpaas.agent.server import job_scale as scale_rpc
from nomadpaas.agent.server.job_plan import plan_job
from nomadpaas.agent.server.state import lookups
from nomadpaas.agent.server.state.schema import ALLOCS, JOBS, SCALING_EVENTS
from nomadpaas.agent.server.state.state_store import Snapshot
from nomadpaas.agent.structs.alloc import alloc_terminal


async def job_revert(req: HTTPRequest, job_id: str) -> Reply:
    require_methods(req, "PUT", "POST")
    body = await req.decode(REVERT_REQUEST)
    if not body.get("JobID"):
        raise bad_request("JobID must be specified")
    if body["JobID"] != job_id:
        raise bad_request("Job ID does not match")
    out = await call(
        server_of(req).jobs.revert,
        req.namespace(),
        job_id,
        int(body.get("JobVersion") or 0),
        body.get("EnforcePriorVersion"),
    )
    return Reply(with_query_meta(out), out["Index"])


async def job_stable(req: HTTPRequest, job_id: str) -> Reply:
    require_methods(req, "PUT", "POST")
    body = await req.decode(STABLE_REQUEST)
    if not body.get("JobID"):
        raise bad_request("JobID must be specified")
    if body["JobID"] != job_id:
        raise bad_request("Job ID does not match")
    index = await call(
        server_of(req).jobs.stable,
        req.namespace(),
        job_id,
        int(body.get("JobVersion") or 0),
        bool(body.get("Stable")),
    )
    return Reply({"Index": index}, index)


async def job_scale(req: HTTPRequest, job_id: str) -> Reply:
    if req.method in ("GET", "HEAD"):
        return await job_scale_status(req, job_id)
    require_methods(req, "PUT", "POST")
    body = await req.decode(SCALE_REQUEST)
    target = body.get("Target") or {}
    if target.get("Job") and target["Job"] != job_id:
        raise bad_request("job ID in payload did not match URL")
    group = target.get("Group") or ""
    if not group:
        raise bad_request("missing task group name for scaling action")
    count = body.get("Count")
    if count is not None and count < 0:
        raise bad_request("scaling action count can't be negative")
    if body.get("Error") and count is not None:
        raise bad_request("scaling action should not contain count if error is true")
    out = await call(
        scale_rpc.scale,
        req.store,
        target.get("Namespace") or req.namespace(),
        job_id,
        group,
        count,
        message=body.get("Message") or "",
        error=bool(body.get("Error")),
        meta=body.get("Meta"),
        job_modify_index=int(body.get("JobModifyIndex") or 0),
    )
    return Reply(with_query_meta(out), out["Index"])


async def job_scale_status(req: HTTPRequest, job_id: str) -> Reply:
    namespace = req.namespace()

    def query(snap: Snapshot) -> tuple[dict[str, Any] | None, int]:
        job = snap.get(JOBS, (namespace, job_id))
        if job is None:
            return None, snap.table_index(JOBS)
        events = (snap.get(SCALING_EVENTS, (namespace, job_id)) or {}).get("ScalingEvents") or {}
        allocs = lookups.allocs_by_job(snap, namespace, job_id, job["CreateIndex"])
        groups: dict[str, Any] = {}
        for group in job.get("TaskGroups") or ():
            mine = [
                a
                for a in allocs
                if a["TaskGroup"] == group["Name"]
                and not alloc_terminal(a)
                and not (a.get("DeploymentStatus") or {}).get("Canary")
            ]
            health = [(a.get("DeploymentStatus") or {}).get("Healthy") for a in mine]
            groups[group["Name"]] = {
                "Desired": group["Count"],
                "Placed": len(mine),
                "Running": sum(1 for a in mine if a.get("ClientStatus") == "running"),
                "Healthy": sum(1 for h in health if h is True),
                "Unhealthy": sum(1 for h in health if h is False),
                "Events": events.get(group["Name"]),
            }
        status = {
            "JobID": job_id,
            "Namespace": namespace,
            "JobCreateIndex": job["CreateIndex"],
            "JobModifyIndex": job["ModifyIndex"],
            "JobStopped": bool(job.get("Stop")),
            "TaskGroups": groups,
        }
        index = max(job["ModifyIndex"], snap.table_index(ALLOCS), snap.table_index(SCALING_EVENTS))
        return status, index

    status, index = await req.blocking_query(query)
    if status is None:
        raise not_found("job not found")
    return Reply(status, index)


async def job_plan(req: HTTPRequest, job_id: str) -> Reply:
    require_methods(req, "PUT", "POST")
    body = await req.decode(PLAN_REQUEST)
    raw = body.get("Job")
    if raw is not None and raw.get("ID") is not None and raw["ID"] != job_id:
        raise bad_request("Job ID does not match")
    job = api_job(body, req.query.get("namespace"))
    out = await call(plan_job, req.store, job, diff=bool(body.get("Diff")))
    return Reply(out, out["Index"])


async def job_dispatch(req: HTTPRequest, job_id: str) -> Reply:
    require_methods(req, "PUT", "POST")
    body = await req.decode(DISPATCH_REQUEST)
    if body.get("JobID") and body["JobID"] != job_id:
        raise bad_request("Job ID does not match")
    payload = None
    if body.get("Payload"):
        try:
            payload = base64.b64decode(body["Payload"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad_request(f"illegal base64 data in Payload: {exc}") from exc
    out = await call(
        scale_rpc.dispatch,
        req.store,
        req.namespace(),
        job_id,
        payload=payload,
        meta=body.get("Meta"),
        id_prefix_template=body.get("IdPrefixTemplate") or "",
        priority=body.get("Priority") or None,
        idempotency_token=req.query.get("idempotency_token", ""),
    )
    return Reply(out, out["Index"])


async def job_dispatch_payload(req: HTTPRequest, job_id: str) -> Reply:
    """The raw request body is the payload (no JSON, no meta)."""
    require_methods(req, "PUT", "POST")
    out = await call(
        scale_rpc.dispatch,
        req.store,
        req.namespace(),
        job_id,
        payload=await req.body() or None,
        meta=None,
        idempotency_token=req.query.get("idempotency_token", ""),
    )
    return Reply(out, out["Index"])


async def job_evaluate(req: HTTPRequest, job_id: str) -> Reply:
    require_methods(req, "PUT", "POST")
    raw = await req.body()
    body: dict[str, Any] = await req.decode(EVALUATE_REQUEST) if raw.strip() else {}
    if body.get("JobID") and body["JobID"] != job_id:
        raise bad_request("JobID parameter does not match")
    force = bool((body.get("EvalOptions") or {}).get("ForceReschedule"))
    out = await call(server_of(req).jobs.evaluate, req.namespace(), job_id, force)
    return Reply(with_query_meta(out), out["Index"])


async def version_tag(req: HTTPRequest, job_id: str, name: str) -> Reply:
    jobs = server_of(req).jobs
    if req.method == "DELETE":
        index = await call(jobs.untag_version, req.namespace(), job_id, name)
        return Reply({"Index": index}, index)
    require_methods(req, "PUT", "POST")
    body = await req.decode(TAG_REQUEST)
    tag, index = await call(
        jobs.tag_version,
        req.namespace(),
        job_id,
        name,
        body.get("Version"),
        body.get("Description") or "",
    )
    return Reply({**tag, "Index": index}, index)


async def job_periodic_force(req: HTTPRequest, job_id: str) -> Reply:
    """This agent has no periodic dispatcher: every job is "non-periodic" to force."""
    require_methods(req, "PUT", "POST")
    namespace = req.namespace()
    job = req.store.snapshot().get(JOBS, (namespace, job_id))
    if job is None:
        raise not_found("job not found")
    if job.get("Periodic") is None:
        raise CodedError(500, "can't force launch non-periodic job")
    raise CodedError(500, "periodic jobs are not launched by this agent")


async def job_services(req: HTTPRequest, job_id: str) -> Reply:
    """Service registrations of the job: none yet (Nomad services arrive later)."""
    require_methods(req, "GET")
    return Reply([], req.store.snapshot().index)
