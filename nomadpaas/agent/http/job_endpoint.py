"""`/v1/jobs` and `/v1/job/:id[/...]`: register, list, read, stop/purge, versions,
summary, allocations, evaluations, deployments, and `/v1/validate/job`; mirrors
command/agent/job_endpoint.go.

Like Nomad's JobSpecificRequest, one handler takes every `/v1/job/...` path and picks
the action by suffix; anything else is the job ID itself (dispatched children have a `/`
in their IDs), so an unknown suffix reads as an unknown job: 404 `job not found`.
The write actions (revert, stable, scale, plan, dispatch, evaluate, tags) live in
job_actions_endpoint.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from nomadpaas.agent.http import job_actions_endpoint as actions
from nomadpaas.agent.http.errors import ERR_INVALID_METHOD, CodedError, not_found
from nomadpaas.agent.http.job_spec import REGISTER_REQUEST, VALIDATE_REQUEST, api_job
from nomadpaas.agent.http.query import query_bool
from nomadpaas.agent.http.rpc import call, require_methods, server_of, with_query_meta
from nomadpaas.agent.http.server import HTTPRequest, Reply, Router
from nomadpaas.agent.server.job_diff import job_diff
from nomadpaas.agent.server.job_summary import is_parameterized, is_periodic
from nomadpaas.agent.server.state import lookups
from nomadpaas.agent.server.state.schema import (
    ALLOCS,
    DEPLOYMENTS,
    EVALS,
    JOB_SUMMARIES,
    JOB_VERSIONS,
    JOBS,
)
from nomadpaas.agent.server.state.state_store import Row, Snapshot
from nomadpaas.agent.structs.alloc import alloc_stub
from nomadpaas.agent.structs.job_validate import multierror_text, validate

ALL_NAMESPACES = "*"
ERR_JOB_NOT_FOUND = "job not found"
Handler = Callable[[HTTPRequest, str], Awaitable[Reply]]


def register(router: Router) -> None:
    router.add(("GET", "PUT", "POST"), "/v1/jobs", jobs_request)
    router.add(("PUT", "POST"), "/v1/validate/job", validate_job)
    router.add("*", "/v1/job/{rest:path}", job_specific)


# -- /v1/jobs ---------------------------------------------------------------------------


async def jobs_request(req: HTTPRequest) -> Reply:
    if req.method in ("GET", "HEAD"):
        return await jobs_list(req)
    return await job_register(req, None)


def job_stub(job: Row, summary: Row | None, meta: bool) -> dict[str, Any]:
    """JobListStub."""
    stub = {
        "ID": job["ID"],
        "ParentID": job.get("ParentID", ""),
        "Name": job["Name"],
        "Namespace": job["Namespace"],
        "Datacenters": job.get("Datacenters"),
        "NodePool": job.get("NodePool", "default"),
        "Multiregion": job.get("Multiregion"),
        "Type": job["Type"],
        "Priority": job["Priority"],
        "Periodic": is_periodic(job),
        "ParameterizedJob": is_parameterized(job),
        "Stop": bool(job.get("Stop")),
        "Status": job.get("Status", ""),
        "StatusDescription": job.get("StatusDescription", ""),
        "JobSummary": summary,
        "CreateIndex": job["CreateIndex"],
        "ModifyIndex": job["ModifyIndex"],
        "JobModifyIndex": job["JobModifyIndex"],
        "SubmitTime": job.get("SubmitTime", 0),
    }
    if meta:
        stub["Meta"] = job.get("Meta")
    return stub


async def jobs_list(req: HTTPRequest) -> Reply:
    namespace = req.namespace()
    prefix = req.query.get("prefix", "")
    meta = query_bool(req.query, "meta")

    def query(snap: Snapshot) -> tuple[list[dict[str, Any]], int]:
        scope = () if namespace == ALL_NAMESPACES else (namespace,)
        rows = [
            job_stub(j, snap.get(JOB_SUMMARIES, (j["Namespace"], j["ID"])), meta)
            for j in snap.list(JOBS, scope)
            if j["ID"].startswith(prefix)
        ]
        return rows, max(snap.table_index(JOBS), snap.table_index(JOB_SUMMARIES))

    rows, index = await req.blocking_query(query)
    return Reply(rows, index)


async def job_register(req: HTTPRequest, path_id: str | None) -> Reply:
    body = await req.decode(REGISTER_REQUEST)
    job = api_job(body, req.query.get("namespace"), path_id)
    out = await call(
        server_of(req).jobs.register,
        job,
        enforce=bool(body.get("EnforceIndex")),
        job_modify_index=int(body.get("JobModifyIndex") or 0),
        eval_priority=body.get("EvalPriority") or None,
        preserve_counts=bool(body.get("PreserveCounts")),
    )
    return Reply(with_query_meta(out), out["Index"])


async def validate_job(req: HTTPRequest) -> Reply:
    body = await req.decode(VALIDATE_REQUEST)
    job = api_job(body, req.query.get("namespace"))
    errs = validate(job)
    return Reply(
        {
            "DriverConfigValidated": True,
            "ValidationErrors": errs or None,
            "Error": multierror_text(errs) if errs else "",
            "Warnings": "",
        }
    )


# -- /v1/job/... ------------------------------------------------------------------------


async def job_specific(req: HTTPRequest) -> Reply:
    path = req.params["rest"]
    if path.endswith("/tag") and "/versions/" in path:
        job_id, _, rest = path.rpartition("/versions/")
        return await actions.version_tag(req, job_id, rest[: -len("/tag")])
    for suffix, handler in _SUFFIXES:
        if path.endswith(suffix):
            return await handler(req, path[: -len(suffix)])
    return await job_crud(req, path)


async def job_crud(req: HTTPRequest, job_id: str) -> Reply:
    if req.method in ("GET", "HEAD"):
        return await job_get(req, job_id)
    if req.method in ("PUT", "POST"):
        return await job_register(req, job_id)
    if req.method == "DELETE":
        return await job_delete(req, job_id)
    raise CodedError(405, ERR_INVALID_METHOD)


async def job_get(req: HTTPRequest, job_id: str) -> Reply:
    namespace = req.namespace()

    def query(snap: Snapshot) -> tuple[Row | None, int]:
        job = snap.get(JOBS, (namespace, job_id))
        return job, job["ModifyIndex"] if job is not None else snap.table_index(JOBS)

    job, index = await req.blocking_query(query)
    if job is None:
        raise not_found(ERR_JOB_NOT_FOUND)
    return Reply(job, index)


async def job_delete(req: HTTPRequest, job_id: str) -> Reply:
    purge = query_bool(req.query, "purge")
    query_bool(req.query, "global")
    no_shutdown_delay = query_bool(req.query, "no_shutdown_delay")
    raw_priority = req.query.get("eval_priority")
    priority = None
    if raw_priority:
        try:
            priority = int(raw_priority)
        except ValueError as exc:
            message = f"Failed to parse value of 'eval_priority' ({raw_priority})"
            raise CodedError(400, message) from exc
    out = await call(
        server_of(req).jobs.deregister,
        req.namespace(),
        job_id,
        purge=purge,
        eval_priority=priority,
        no_shutdown_delay=no_shutdown_delay,
    )
    return Reply(with_query_meta(out), out["Index"])


async def job_versions(req: HTTPRequest, job_id: str) -> Reply:
    require_methods(req, "GET")
    namespace = req.namespace()
    diffs = query_bool(req.query, "diffs")

    def query(snap: Snapshot) -> tuple[list[Row], int]:
        return lookups.job_versions(snap, namespace, job_id), snap.table_index(JOB_VERSIONS)

    versions, index = await req.blocking_query(query)
    if not versions:
        raise not_found("job versions not found")
    body: dict[str, Any] = {"Versions": versions, "Diffs": None}
    if diffs:
        body["Diffs"] = [job_diff(older, newer) for newer, older in itertools.pairwise(versions)]
    body.update({"Index": index, "LastContact": 0, "KnownLeader": True, "NextToken": ""})
    return Reply(body, index)


async def job_summary(req: HTTPRequest, job_id: str) -> Reply:
    require_methods(req, "GET")
    namespace = req.namespace()

    def query(snap: Snapshot) -> tuple[Row | None, int]:
        row = snap.get(JOB_SUMMARIES, (namespace, job_id))
        return row, row["ModifyIndex"] if row is not None else snap.table_index(JOB_SUMMARIES)

    row, index = await req.blocking_query(query)
    if row is None:
        raise not_found(ERR_JOB_NOT_FOUND)
    return Reply(row, index)


async def job_allocations(req: HTTPRequest, job_id: str) -> Reply:
    require_methods(req, "GET")
    namespace = req.namespace()
    all_ = query_bool(req.query, "all")

    def query(snap: Snapshot) -> tuple[list[dict[str, Any]], int]:
        job = snap.get(JOBS, (namespace, job_id))
        create = job["CreateIndex"] if job is not None and not all_ else None
        allocs = lookups.allocs_by_job(snap, namespace, job_id, create)
        return [alloc_stub(a) for a in allocs], snap.table_index(ALLOCS)

    rows, index = await req.blocking_query(query)
    return Reply(rows, index)


async def job_evaluations(req: HTTPRequest, job_id: str) -> Reply:
    require_methods(req, "GET")
    namespace = req.namespace()

    def query(snap: Snapshot) -> tuple[list[Row], int]:
        return lookups.evals_by_job(snap, namespace, job_id), snap.table_index(EVALS)

    rows, index = await req.blocking_query(query)
    return Reply(rows, index)


def _job_deployments(snap: Snapshot, namespace: str, job_id: str, all_: bool) -> list[Row]:
    job = snap.get(JOBS, (namespace, job_id))
    create = job["CreateIndex"] if job is not None and not all_ else None
    return lookups.deployments_by_job(snap, namespace, job_id, create)


async def job_deployments(req: HTTPRequest, job_id: str) -> Reply:
    require_methods(req, "GET")
    namespace = req.namespace()
    all_ = query_bool(req.query, "all")

    def query(snap: Snapshot) -> tuple[list[Row], int]:
        return _job_deployments(snap, namespace, job_id, all_), snap.table_index(DEPLOYMENTS)

    rows, index = await req.blocking_query(query)
    return Reply(rows, index)


async def job_latest_deployment(req: HTTPRequest, job_id: str) -> Reply:
    require_methods(req, "GET")
    namespace = req.namespace()

    def query(snap: Snapshot) -> tuple[Row | None, int]:
        found = _job_deployments(snap, namespace, job_id, False)
        latest = found[0] if found else None
        return latest, latest["ModifyIndex"] if latest else snap.table_index(DEPLOYMENTS)

    row, index = await req.blocking_query(query)
    return Reply(row, index)


# Checked in this order, like JobSpecificRequest's switch on strings.HasSuffix.
_SUFFIXES: tuple[tuple[str, Handler], ...] = (
    ("/evaluate", actions.job_evaluate),
    ("/dispatch/payload", actions.job_dispatch_payload),
    ("/allocations", job_allocations),
    ("/evaluations", job_evaluations),
    ("/plan", actions.job_plan),
    ("/summary", job_summary),
    ("/dispatch", actions.job_dispatch),
    ("/versions", job_versions),
    ("/revert", actions.job_revert),
    ("/deployments", job_deployments),
    ("/deployment", job_latest_deployment),
    ("/stable", actions.job_stable),
    ("/scale", actions.job_scale),
    ("/periodic/force", actions.job_periodic_force),
    ("/services", actions.job_services),
)
