"""`/v1/evaluations`, `/v1/evaluations/count`, `/v1/evaluation/:id` and
`/v1/evaluation/:id/allocations`; mirrors command/agent/eval_endpoint.go.
"""

from __future__ import annotations

from typing import Any

from nomadpaas.agent.http.errors import not_found
from nomadpaas.agent.http.query import query_bool
from nomadpaas.agent.http.server import HTTPRequest, Reply, Router
from nomadpaas.agent.server.state import lookups
from nomadpaas.agent.server.state.schema import ALLOCS, EVALS
from nomadpaas.agent.server.state.state_store import Row, Snapshot
from nomadpaas.agent.structs.alloc import alloc_stub

ALL_NAMESPACES = "*"
_STUB_FIELDS = (
    "ID", "Namespace", "Priority", "Type", "TriggeredBy", "JobID", "NodeID", "DeploymentID",
    "Status", "StatusDescription", "WaitUntil", "NextEval", "PreviousEval", "BlockedEval",
    "CreateIndex", "ModifyIndex", "CreateTime", "ModifyTime",
)  # fmt: skip


def register(router: Router) -> None:
    router.add("GET", "/v1/evaluations", evals_list)
    router.add("GET", "/v1/evaluations/count", evals_count)
    router.add("GET", "/v1/evaluation/{eval_id}/allocations", eval_allocations)
    router.add("GET", "/v1/evaluation/{eval_id}", eval_get)


def _visible(req: HTTPRequest, snap: Snapshot) -> list[Row]:
    namespace = req.namespace()
    prefix = req.query.get("prefix", "")
    job = req.query.get("job")
    status = req.query.get("status")
    return sorted(
        (
            e
            for e in snap.list(EVALS)
            if e["ID"].startswith(prefix)
            and (namespace == ALL_NAMESPACES or e["Namespace"] == namespace)
            and (not job or e["JobID"] == job)
            and (not status or e["Status"] == status)
        ),
        key=lambda e: e["CreateIndex"],
    )


async def evals_list(req: HTTPRequest) -> Reply:
    def query(snap: Snapshot) -> tuple[list[Row], int]:
        return _visible(req, snap), snap.table_index(EVALS)

    rows, index = await req.blocking_query(query)
    return Reply(rows, index)


async def evals_count(req: HTTPRequest) -> Reply:
    def query(snap: Snapshot) -> tuple[int, int]:
        return len(_visible(req, snap)), snap.table_index(EVALS)

    count, index = await req.blocking_query(query)
    return Reply({"Count": count, "Index": index}, index)


async def eval_get(req: HTTPRequest) -> Reply:
    eval_id = req.params["eval_id"]
    related = query_bool(req.query, "related")

    def query(snap: Snapshot) -> tuple[dict[str, Any] | None, int]:
        row = snap.get(EVALS, (eval_id,))
        if row is None:
            return None, snap.table_index(EVALS)
        out = dict(row)
        if related:
            chain = lookups.evals_by_job(snap, row["Namespace"], row["JobID"])
            out["RelatedEvals"] = [
                {k: e.get(k) for k in _STUB_FIELDS} for e in chain if e["ID"] != eval_id
            ]
        return out, row["ModifyIndex"]

    row, index = await req.blocking_query(query)
    if row is None:
        raise not_found("eval not found")
    return Reply(row, index)


async def eval_allocations(req: HTTPRequest) -> Reply:
    eval_id = req.params["eval_id"]

    def query(snap: Snapshot) -> tuple[list[dict[str, Any]], int]:
        return [alloc_stub(a) for a in lookups.allocs_by_eval(snap, eval_id)], snap.table_index(
            ALLOCS
        )

    rows, index = await req.blocking_query(query)
    return Reply(rows, index)
