"""`/v1/deployments`, `/v1/deployment/:id`, `/v1/deployment/allocations/:id` (reads) and
the writes `/v1/deployment/{promote,fail,pause,allocation-health}/:id`, served by the
server's deployment watcher; mirrors command/agent/deployment_endpoint.go.

Writes answer `{"EvalID","EvalCreateIndex","DeploymentModifyIndex","RevertedJobVersion",
"Index"}`. Bodies decode case-insensitively (python-nomad sends `UnHealthyAllocationIDs`).
"""

from __future__ import annotations

from typing import Any

from nomadpaas.agent.http.decode import BOOL, STR, ListOf, Struct
from nomadpaas.agent.http.errors import bad_request, not_found
from nomadpaas.agent.http.rpc import call, server_of
from nomadpaas.agent.http.server import HTTPRequest, Reply, Router
from nomadpaas.agent.server.state import lookups
from nomadpaas.agent.server.state.schema import ALLOCS, DEPLOYMENTS
from nomadpaas.agent.server.state.state_store import Row, Snapshot
from nomadpaas.agent.structs.alloc import alloc_stub

ALL_NAMESPACES = "*"
WRITE_METHODS = ("PUT", "POST")

PROMOTE_REQUEST = Struct(
    "DeploymentPromoteRequest", {"DeploymentID": STR, "All": BOOL, "Groups": ListOf(STR)}
)
PAUSE_REQUEST = Struct("DeploymentPauseRequest", {"DeploymentID": STR, "Pause": BOOL})
HEALTH_REQUEST = Struct(
    "DeploymentAllocHealthRequest",
    {
        "DeploymentID": STR,
        "HealthyAllocationIDs": ListOf(STR),
        "UnhealthyAllocationIDs": ListOf(STR),
    },
)


def register(router: Router) -> None:
    router.add(WRITE_METHODS, "/v1/deployment/promote/{deployment_id}", deployment_promote)
    router.add(WRITE_METHODS, "/v1/deployment/fail/{deployment_id}", deployment_fail)
    router.add(WRITE_METHODS, "/v1/deployment/pause/{deployment_id}", deployment_pause)
    router.add(WRITE_METHODS, "/v1/deployment/allocation-health/{deployment_id}", deployment_health)
    router.add("GET", "/v1/deployments", deployments_list)
    router.add("GET", "/v1/deployment/allocations/{deployment_id}", deployment_allocations)
    router.add("GET", "/v1/deployment/{deployment_id}", deployment_get)


async def deployments_list(req: HTTPRequest) -> Reply:
    namespace = req.namespace()
    prefix = req.query.get("prefix", "")

    def query(snap: Snapshot) -> tuple[list[Row], int]:
        rows = [
            d
            for d in snap.list(DEPLOYMENTS)
            if d["ID"].startswith(prefix)
            and (namespace == ALL_NAMESPACES or d["Namespace"] == namespace)
        ]
        rows.sort(key=lambda d: d["CreateIndex"])
        return rows, snap.table_index(DEPLOYMENTS)

    rows, index = await req.blocking_query(query)
    return Reply(rows, index)


async def deployment_get(req: HTTPRequest) -> Reply:
    deployment_id = req.params["deployment_id"]

    def query(snap: Snapshot) -> tuple[Row | None, int]:
        row = snap.get(DEPLOYMENTS, (deployment_id,))
        return row, row["ModifyIndex"] if row is not None else snap.table_index(DEPLOYMENTS)

    row, index = await req.blocking_query(query)
    if row is None:
        raise not_found("deployment not found")
    return Reply(row, index)


async def deployment_allocations(req: HTTPRequest) -> Reply:
    deployment_id = req.params["deployment_id"]

    def query(snap: Snapshot) -> tuple[list[dict[str, Any]], int]:
        allocs = lookups.allocs_by_deployment(snap, deployment_id)
        return [alloc_stub(a) for a in allocs], snap.table_index(ALLOCS)

    rows, index = await req.blocking_query(query)
    return Reply(rows, index)


def _check_id(body: dict[str, Any], deployment_id: str) -> None:
    if not body.get("DeploymentID"):
        raise bad_request("DeploymentID must be specified")
    if body["DeploymentID"] != deployment_id:
        raise bad_request("Deployment ID does not match")


async def deployment_promote(req: HTTPRequest) -> Reply:
    deployment_id = req.params["deployment_id"]
    body = await req.decode(PROMOTE_REQUEST) or {}
    _check_id(body, deployment_id)
    out = await call(
        server_of(req).deployment_watcher.promote_deployment,
        deployment_id,
        bool(body.get("All")),
        list(body.get("Groups") or []),
    )
    return Reply(out, out["Index"])


async def deployment_fail(req: HTTPRequest) -> Reply:
    deployment_id = req.params["deployment_id"]  # any body is ignored, as in Nomad
    out = await call(server_of(req).deployment_watcher.fail_deployment, deployment_id)
    return Reply(out, out["Index"])


async def deployment_pause(req: HTTPRequest) -> Reply:
    deployment_id = req.params["deployment_id"]
    body = await req.decode(PAUSE_REQUEST) or {}
    _check_id(body, deployment_id)
    out = await call(
        server_of(req).deployment_watcher.pause_deployment, deployment_id, bool(body.get("Pause"))
    )
    return Reply(out, out["Index"])


async def deployment_health(req: HTTPRequest) -> Reply:
    deployment_id = req.params["deployment_id"]
    body = await req.decode(HEALTH_REQUEST) or {}
    _check_id(body, deployment_id)
    out = await call(
        server_of(req).deployment_watcher.set_alloc_health,
        deployment_id,
        list(body.get("HealthyAllocationIDs") or []),
        list(body.get("UnhealthyAllocationIDs") or []),
    )
    return Reply(out, out["Index"])
