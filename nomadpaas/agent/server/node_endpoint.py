"""The client-facing Node "RPC" (Node.GetClientAllocs, Node.UpdateAlloc) and allocation
stop (Alloc.Stop); mirrors nomad/node_endpoint.go and nomad/alloc_endpoint.go.

This is the server half of the `ServerRPC` protocol the client's runners consume:

    get_client_allocs(node_id, min_index, timeout_s) -> (allocs, index)
    update_allocs(updates) -> index

and `watch_client_allocs`, the client loop's cheaper `get_client_allocs` (it wakes only
when something the client acts on changed).

Both block (fsync, blocking query): call them from a thread, never an event loop.
Returned allocations are the state store's frozen rows (FrozenDict; lists are tuples):
read them freely, `thaw()` a copy to change one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from nomadpaas.agent.scheduler import reconcile_util as ru
from nomadpaas.agent.server.errors import RPCError
from nomadpaas.agent.server.eval_endpoint import upsert_eval
from nomadpaas.agent.server.job_summary import refresh_job
from nomadpaas.agent.server.state import frozen, lookups
from nomadpaas.agent.server.state.frozen import thaw
from nomadpaas.agent.server.state.schema import ALLOCS, DEPLOYMENTS, JOBS, WATCH_NODE_ALLOCS
from nomadpaas.agent.server.state.state_store import Row, Snapshot, StateStore, Txn
from nomadpaas.agent.structs.alloc import (
    ALLOC_CLIENT_COMPLETE,
    ALLOC_CLIENT_FAILED,
    ALLOC_DESIRED_RUN,
    ALLOC_DESIRED_STOP,
    ALLOC_MIGRATING,
    alloc_terminal,
    client_terminal,
    ns_to_rfc3339,
    rfc3339_to_ns,
)
from nomadpaas.agent.structs.duration import NS_PER_MIN
from nomadpaas.agent.structs.evaluation import (
    TRIGGER_ALLOC_STOP,
    TRIGGER_NODE_UPDATE,
    TRIGGER_RETRY_FAILED_ALLOC,
    new_evaluation,
)
from nomadpaas.agent.structs.job import JOB_TYPE_SERVICE

MSG_ALLOC_CLIENT_UPDATE = "AllocClientUpdateRequestType"
MSG_ALLOC_DESIRED_TRANSITION = "AllocUpdateDesiredTransitionRequestType"
# Terminal allocs stay in GetClientAllocs this long after their last change, so a client
# that was down briefly still learns it must stop them (Nomad keeps them until GC).
RECENTLY_TERMINAL_NS = 15 * NS_PER_MIN
# The fields a client may report about an allocation (structs.Allocation client fields).
CLIENT_FIELDS = ("ClientStatus", "ClientDescription", "TaskStates", "NetworkStatus")


class NodeRPC:
    """The server side of the client's RPC, over one state store."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    # -- Node.GetClientAllocs ------------------------------------------------------------

    def get_client_allocs(
        self, node_id: str, min_index: int, timeout_s: float
    ) -> tuple[list[Row], int]:
        """The node's allocations (Job embedded), blocking until the allocs table passes
        `min_index` or `timeout_s` ends; non-terminal ones plus those that turned terminal
        within RECENTLY_TERMINAL_NS. Loop with the returned index."""

        def query(snap: Snapshot) -> tuple[list[Row], int]:
            return _client_allocs(snap, node_id), max(snap.table_index(ALLOCS), 1)

        return self._store.blocking_query(query, min_index, timeout_s)

    def watch_client_allocs(
        self, node_id: str, min_index: int, timeout_s: float
    ) -> tuple[list[Row], int]:
        """`get_client_allocs` for the node's own client loop: blocks until the node's
        watch index (schema.WATCH_NODE_ALLOCS: an allocation placed, removed, or changed
        in what the client acts on) passes `min_index`, not on every commit. The client's
        own status updates, most commits while allocations start, wake nothing; Nomad's
        client skips them the same way, by AllocModifyIndex. Returns the same list as
        `get_client_allocs` (also on timeout, so allocations that aged out of it are
        noticed) and the watch index to loop with."""

        def watch_index(snap: Snapshot) -> tuple[Snapshot, int]:
            return snap, max(snap.watch_index(ALLOCS, WATCH_NODE_ALLOCS, (node_id,)), 1)

        snap, index = self._store.blocking_query(watch_index, min_index, timeout_s)
        return _client_allocs(snap, node_id), index

    # -- Node.UpdateAlloc ---------------------------------------------------------------

    def update_allocs(self, updates: Iterable[dict[str, Any]]) -> int:
        """Apply client updates ({ID, ClientStatus, ClientDescription, TaskStates,
        DeploymentStatus?, NetworkStatus?}); unknown IDs are skipped. Returns the index."""
        batch = list(updates)
        return self._store.write(MSG_ALLOC_CLIENT_UPDATE, lambda txn: _apply(txn, batch))[1]

    # -- Alloc.Stop ---------------------------------------------------------------------

    def stop_alloc(self, alloc_id: str, no_shutdown_delay: bool = False) -> dict[str, Any]:
        """Stop one allocation and create an `alloc-stop` eval so it is replaced."""

        def txn_fn(txn: Txn) -> Row:
            alloc = txn.get(ALLOCS, (alloc_id,))
            if alloc is None:
                raise RPCError("alloc not found", 404)
            a = thaw(alloc)
            a["DesiredTransition"] = {
                **(a.get("DesiredTransition") or {}),
                "Migrate": True,
                "NoShutdownDelay": no_shutdown_delay or None,
            }
            a["DesiredStatus"] = ALLOC_DESIRED_STOP
            a["DesiredDescription"] = ALLOC_MIGRATING
            a["ModifyIndex"] = a["AllocModifyIndex"] = txn.index
            a["ModifyTime"] = time.time_ns()
            txn.put(ALLOCS, (alloc_id,), a)
            evaluation = _eval_for(txn, a, TRIGGER_ALLOC_STOP)
            refresh_job(txn, a["Namespace"], a["JobID"])
            return evaluation

        evaluation, index = self._store.write(MSG_ALLOC_DESIRED_TRANSITION, txn_fn)
        return {"EvalID": evaluation["ID"], "Index": index}


def _client_allocs(snap: Snapshot, node_id: str) -> list[Row]:
    """The node's allocations a client must know: the live ones and the recently ended."""
    horizon = time.time_ns() - RECENTLY_TERMINAL_NS
    return [
        a
        for a in lookups.allocs_by_node(snap, node_id)
        if not alloc_terminal(a) or int(a.get("ModifyTime") or 0) >= horizon
    ]


def _eval_for(txn: Txn, alloc: Row, trigger: str) -> Row:
    job = txn.get(JOBS, (alloc["Namespace"], alloc["JobID"])) or alloc["Job"]
    evaluation = new_evaluation(
        eval_id=str(uuid.uuid4()),
        job=thaw(job),
        triggered_by=trigger,
        now_ns=time.time_ns(),
    )
    return upsert_eval(txn, evaluation, refresh=False)


def _apply(txn: Txn, updates: list[dict[str, Any]]) -> None:
    now = time.time_ns()
    jobs: set[tuple[str, str]] = set()
    evals_for: set[tuple[str, str]] = set()
    for update in updates:
        alloc = txn.get(ALLOCS, (update["ID"],))
        if alloc is None:
            continue
        changes = {key: update[key] for key in CLIENT_FIELDS if key in update}
        if _health_changed(alloc, update.get("DeploymentStatus")):
            # The client resends its verdict with every update; only a change counts
            # (and moves DeploymentStatus.ModifyIndex, which the deployment watcher
            # compares with the latest evaluation). The server owns Canary.
            status = {
                k: v for k, v in update["DeploymentStatus"].items() if k in ("Healthy", "Timestamp")
            }
            status["ModifyIndex"] = txn.index
            if not status.get("Timestamp"):
                status["Timestamp"] = ns_to_rfc3339(now)
            update_deployment_with_alloc(txn, alloc, status, now)
            changes["DeploymentStatus"] = {**(alloc.get("DeploymentStatus") or {}), **status}
        changes["ModifyIndex"] = txn.index
        changes["ModifyTime"] = now
        # Only the client's fields are frozen anew; the rest (the embedded Job, the
        # resources) stays shared with the old row.
        a = frozen.replace(alloc, changes)
        txn.put(ALLOCS, (a["ID"],), a)
        job_key = (a["Namespace"], a["JobID"])
        jobs.add(job_key)
        if job_key not in evals_for and _needs_eval(txn, alloc, a):
            evals_for.add(job_key)
            trigger = (
                TRIGGER_RETRY_FAILED_ALLOC
                if a["ClientStatus"] == ALLOC_CLIENT_FAILED
                else TRIGGER_NODE_UPDATE
            )
            _eval_for(txn, a, trigger)
    for namespace, job_id in sorted(jobs):
        refresh_job(txn, namespace, job_id)


def _needs_eval(txn: Txn, old: Row, new: Row) -> bool:
    """A failed alloc eligible for rescheduling, or a service alloc that ended on its own."""
    if client_terminal(old) or new.get("DesiredStatus") != ALLOC_DESIRED_RUN:
        return False
    job = new.get("Job") or {}
    if new["ClientStatus"] == ALLOC_CLIENT_FAILED:
        if new.get("FollowupEvalID"):
            return False
        current = txn.get(JOBS, (new["Namespace"], new["JobID"])) or job
        _, eligible = ru.next_reschedule_time(new, thaw(current))
        return eligible
    return new["ClientStatus"] == ALLOC_CLIENT_COMPLETE and job.get("Type") == JOB_TYPE_SERVICE


def _health_changed(alloc: Row, status: dict[str, Any] | None) -> bool:
    if status is None or status.get("Healthy") is None:
        return False
    return bool((alloc.get("DeploymentStatus") or {}).get("Healthy") != status["Healthy"])


def update_deployment_with_alloc(txn: Txn, old: Row, status: dict[str, Any], now: int) -> None:
    """Deployment counters move in the same write as the alloc's health (Nomad does this
    in updateDeploymentWithAlloc): first health +1, a healthy→unhealthy flip moves one.
    The one place for HealthyAllocs/UnhealthyAllocs/RequireProgressBy on health: client
    updates here, the manual health API in deploymentwatcher/state_triggers.py."""
    dep_id = old.get("DeploymentID") or ""
    row = txn.get(DEPLOYMENTS, (dep_id,)) if dep_id else None
    if row is None:
        return
    before = (old.get("DeploymentStatus") or {}).get("Healthy")
    after = status.get("Healthy")
    if after is None or before == after:
        return
    d = thaw(row)
    state = d["TaskGroups"].get(old["TaskGroup"])
    if state is None:
        return
    if before is True:
        state["HealthyAllocs"] -= 1
    elif before is False:
        state["UnhealthyAllocs"] -= 1
    state["HealthyAllocs" if after else "UnhealthyAllocs"] += 1
    deadline = int(state.get("ProgressDeadline") or 0)
    if after and deadline > 0:
        healthy_at = rfc3339_to_ns(status.get("Timestamp")) or now
        if healthy_at + deadline > rfc3339_to_ns(state.get("RequireProgressBy")):
            state["RequireProgressBy"] = ns_to_rfc3339(healthy_at + deadline)
    d["ModifyIndex"] = txn.index
    d["ModifyTime"] = now
    txn.put(DEPLOYMENTS, (dep_id,), d)
