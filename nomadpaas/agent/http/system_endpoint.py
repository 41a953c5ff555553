"""`/v1/system/gc` and `/v1/system/reconcile/summaries`; mirrors
command/agent/system_endpoint.go.
"""

from __future__ import annotations

from starlette.responses import Response

from nomadpaas.agent.http.rpc import call
from nomadpaas.agent.http.server import HTTPRequest, Router
from nomadpaas.agent.server.core_gc import collect
from nomadpaas.agent.server.job_summary import refresh_job
from nomadpaas.agent.server.state.schema import JOBS
from nomadpaas.agent.server.state.state_store import StateStore, Txn

MSG_RECONCILE_SUMMARIES = "ReconcileJobSummariesRequestType"


def register(router: Router) -> None:
    router.add("PUT", "/v1/system/gc", system_gc)
    router.add("PUT", "/v1/system/reconcile/summaries", reconcile_summaries)


async def system_gc(req: HTTPRequest) -> Response:
    """Force a garbage collection now (thresholds ignored); 200 with an empty body."""
    await call(collect, req.store, force=True)
    return Response(status_code=200)


def _reconcile(store: StateStore) -> None:
    def txn_fn(txn: Txn) -> None:
        for job in txn.list(JOBS):
            refresh_job(txn, job["Namespace"], job["ID"])

    store.write(MSG_RECONCILE_SUMMARIES, txn_fn)


async def reconcile_summaries(req: HTTPRequest) -> Response:
    await call(_reconcile, req.store)
    return Response(status_code=200)
