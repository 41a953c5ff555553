"""`/v1/allocations`, `/v1/allocation/:id` and `/v1/allocation/:id/stop`; mirrors
command/agent/alloc_endpoint.go (the server-side parts; client endpoints live elsewhere).
"""

from __future__ import annotations

from typing import Any

from nomadpaas.agent.http.errors import not_found
from nomadpaas.agent.http.query import query_bool
from nomadpaas.agent.http.rpc import call, server_of
from nomadpaas.agent.http.server import HTTPRequest, Reply, Router
from nomadpaas.agent.server.state.schema import ALLOCS
from nomadpaas.agent.server.state.state_store import Row, Snapshot
from nomadpaas.agent.structs.alloc import alloc_stub

ALL_NAMESPACES = "*"


def register(router: Router) -> None:
    router.add("GET", "/v1/allocations", allocs_list)
    router.add(("PUT", "POST"), "/v1/allocation/{alloc_id}/stop", alloc_stop)
    router.add("GET", "/v1/allocation/{alloc_id}", alloc_get)


async def allocs_list(req: HTTPRequest) -> Reply:
    namespace = req.namespace()
    prefix = req.query.get("prefix", "")
    resources = query_bool(req.query, "resources")
    task_states = query_bool(req.query, "task_states", default=True)

    def query(snap: Snapshot) -> tuple[list[dict[str, Any]], int]:
        rows = [
            alloc_stub(a, resources=resources, task_states=task_states)
            for a in snap.list(ALLOCS)
            if a["ID"].startswith(prefix)
            and (namespace == ALL_NAMESPACES or a["Namespace"] == namespace)
        ]
        rows.sort(key=lambda a: a["CreateIndex"])
        return rows, snap.table_index(ALLOCS)

    rows, index = await req.blocking_query(query)
    return Reply(rows, index)


async def alloc_get(req: HTTPRequest) -> Reply:
    alloc_id = req.params["alloc_id"]

    def query(snap: Snapshot) -> tuple[Row | None, int]:
        row = snap.get(ALLOCS, (alloc_id,))
        return row, row["ModifyIndex"] if row is not None else snap.table_index(ALLOCS)

    row, index = await req.blocking_query(query)
    if row is None:
        raise not_found("alloc not found")
    return Reply(row, index)


async def alloc_stop(req: HTTPRequest) -> Reply:
    no_delay = query_bool(req.query, "no_shutdown_delay")
    out = await call(server_of(req).node_rpc.stop_alloc, req.params["alloc_id"], no_delay)
    return Reply(out, out["Index"])
