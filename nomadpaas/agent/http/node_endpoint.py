"""`/v1/nodes` and `/v1/node/:id`; mirrors command/agent/node_endpoint.go."""

from __future__ import annotations

from typing import Any

from nomadpaas.agent.http.errors import not_found
from nomadpaas.agent.http.query import query_bool
from nomadpaas.agent.http.server import HTTPRequest, Reply, Router
from nomadpaas.agent.server.state.schema import NODES
from nomadpaas.agent.server.state.state_store import Row, Snapshot
from nomadpaas.agent.structs.node import node_stub


def register(router: Router) -> None:
    router.add("GET", "/v1/nodes", nodes_list)
    router.add("GET", "/v1/node/{node_id}", node_specific)


async def nodes_list(req: HTTPRequest) -> Reply:
    prefix = req.query.get("prefix", "")
    resources = query_bool(req.query, "resources") or query_bool(req.query, "os")

    def query(snap: Snapshot) -> tuple[list[dict[str, Any]], int]:
        rows = [node_stub(n, resources) for n in snap.list(NODES) if n["ID"].startswith(prefix)]
        return rows, snap.table_index(NODES)

    rows, index = await req.blocking_query(query)
    return Reply(rows, index)


async def node_specific(req: HTTPRequest) -> Reply:
    node_id = req.params["node_id"]

    def query(snap: Snapshot) -> tuple[Row | None, int]:
        row = snap.get(NODES, (node_id,))
        if row is None:
            # Nomad also resolves a unique ID prefix here.
            matches = [n for n in snap.list(NODES) if n["ID"].startswith(node_id)]
            row = matches[0] if len(matches) == 1 else None
        return row, row["ModifyIndex"] if row is not None else snap.table_index(NODES)

    row, index = await req.blocking_query(query)
    if row is None:
        raise not_found("node not found")
    return Reply(row, index)
