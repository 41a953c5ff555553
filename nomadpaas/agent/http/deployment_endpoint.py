"""`/v1/deployments`, `/v1/deployment/:id` and `/v1/deployment/allocations/:id` (reads;
promote/fail/pause/health arrive with the deployment watcher); mirrors
command/agent/deployment_endpoint.go.
"""

from __future__ import annotations

from typing import Any

from nomadpaas.agent.http.errors import not_found
from nomadpaas.agent.http.server import HTTPRequest, Reply, Router
from nomadpaas.agent.server.state import lookups
from nomadpaas.agent.server.state.schema import ALLOCS, DEPLOYMENTS
from nomadpaas.agent.server.state.state_store import Row, Snapshot
from nomadpaas.agent.structs.alloc import alloc_stub

ALL_NAMESPACES = "*"


def register(router: Router) -> None:
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
