"""The deployment watcher's writes, each one state-store transaction with Nomad's message
type; mirrors deploymentWatcherRaftShim (nomad/server.go) plus the state store's
UpdateDeploymentStatus, UpdateDeploymentPromotion, UpdateDeploymentAllocHealth and
UpdateAllocsDesiredTransitions (nomad/state/state_store.go).

The checks that must be atomic with the change (the deployment is still active; enough
healthy canaries to promote) run inside the transaction, so their errors carry Nomad's
texts: `can't promote terminal deployment`, `Task group "web" has 0/1 healthy
allocations` (go-multierror), and so on.

Message types (and so event types, nomad-api.md §6): status, pause, fail and auto-revert
→ `DeploymentStatusUpdate` (the reverted Job and the Evaluation too); promotion →
`DeploymentPromotion`; manual health → `DeploymentAllocHealth`; reschedule marks →
`AllocationUpdateDesiredStatus`; batched evaluations → `EvaluationUpdated`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from nomadpaas.agent.server.deploymentwatcher.decisions import StatusUpdate
from nomadpaas.agent.server.deploymentwatcher.deployment_watcher import (
    WriteResult,
    new_watcher_eval,
    running_description,
)
from nomadpaas.agent.server.errors import RPCError
from nomadpaas.agent.server.eval_endpoint import MSG_EVAL_UPDATE, upsert_eval
from nomadpaas.agent.server.job_endpoint import copy_version_as_new
from nomadpaas.agent.server.node_endpoint import update_deployment_with_alloc
from nomadpaas.agent.server.state.frozen import thaw
from nomadpaas.agent.server.state.schema import ALLOCS, DEPLOYMENTS, JOBS
from nomadpaas.agent.server.state.state_store import Row, StateStore, Txn
from nomadpaas.agent.structs.alloc import alloc_terminal, ns_to_rfc3339
from nomadpaas.agent.structs.deployment import (
    DEPLOYMENT_STATUS_RUNNING,
    deployment_active,
)
from nomadpaas.agent.structs.job_validate import multierror_text

MSG_DEPLOYMENT_STATUS_UPDATE = "DeploymentStatusUpdateRequestType"
MSG_DEPLOYMENT_PROMOTE = "DeploymentPromoteRequestType"
MSG_DEPLOYMENT_ALLOC_HEALTH = "DeploymentAllocHealthRequestType"
MSG_ALLOC_DESIRED_TRANSITION = "AllocUpdateDesiredTransitionRequestType"
ERR_NOT_FOUND = "deployment not found"
ERR_HEALTH_TERMINAL = "can't set health of allocations for a terminal deployment"


class StateTriggers:
    """Implements the watcher's DeploymentTriggers protocol over one state store."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    # -- status: watcher failures, fail API, pause/resume ------------------------------

    def update_deployment_status(
        self,
        update: StatusUpdate,
        *,
        terminal_error: str,
        create_eval: bool = True,
        reset_progress: bool = False,
    ) -> WriteResult:
        def txn_fn(txn: Txn) -> tuple[Row | None, int | None]:
            d = _active(txn, update.deployment_id, terminal_error)
            now = time.time_ns()
            d["Status"] = update.status
            d["StatusDescription"] = update.description
            if reset_progress:  # resume: every deadline starts over
                for state in d["TaskGroups"].values():
                    deadline = int(state.get("ProgressDeadline") or 0)
                    if deadline > 0:
                        state["RequireProgressBy"] = ns_to_rfc3339(now + deadline)
            _put_deployment(txn, d, now)
            reverted = _revert(txn, d, update.revert_to)
            evaluation = _eval(txn, d) if create_eval else None
            return evaluation, reverted

        (evaluation, reverted), index = self._store.write(MSG_DEPLOYMENT_STATUS_UPDATE, txn_fn)
        return _result(index, evaluation, reverted)

    # -- promotion --------------------------------------------------------------------

    def promote(self, deployment_id: str, all_groups: bool, groups: Sequence[str]) -> WriteResult:
        def txn_fn(txn: Txn) -> Row:
            d = _active(txn, deployment_id, "can't promote terminal deployment")
            chosen = [g for g in sorted(d["TaskGroups"]) if all_groups or g in groups]
            allocs = {a["ID"]: a for a in txn.list(ALLOCS) if a.get("DeploymentID") == d["ID"]}
            errors = []
            for name in chosen:
                state = d["TaskGroups"][name]
                desired = int(state.get("DesiredCanaries") or 0)
                if desired == 0:
                    continue
                healthy = [
                    allocs[i]
                    for i in state.get("PlacedCanaries") or ()
                    if i in allocs
                    and not alloc_terminal(allocs[i])
                    and (allocs[i].get("DeploymentStatus") or {}).get("Healthy") is True
                ]
                if len(healthy) < desired:
                    errors.append(
                        f'Task group "{name}" has {len(healthy)}/{desired} healthy allocations'
                    )
            if errors:
                raise RPCError(multierror_text(errors))
            now = time.time_ns()
            for name in chosen:
                state = d["TaskGroups"][name]
                if int(state.get("DesiredCanaries") or 0) == 0:
                    continue
                state["Promoted"] = True
                deadline = int(state.get("ProgressDeadline") or 0)
                if deadline > 0:
                    state["RequireProgressBy"] = ns_to_rfc3339(now + deadline)
                for alloc_id in state.get("PlacedCanaries") or ():
                    alloc = allocs.get(alloc_id)
                    if alloc is None or not (alloc.get("DeploymentStatus") or {}).get("Canary"):
                        continue
                    a = dict(alloc)
                    a["DeploymentStatus"] = {
                        **a["DeploymentStatus"],
                        "Canary": False,
                        "ModifyIndex": txn.index,
                    }
                    a["ModifyIndex"] = txn.index
                    a["ModifyTime"] = now
                    txn.put(ALLOCS, (alloc_id,), a)
            if d["Status"] == DEPLOYMENT_STATUS_RUNNING:
                d["StatusDescription"] = running_description(d)
            _put_deployment(txn, d, now)
            return _eval(txn, d)

        evaluation, index = self._store.write(MSG_DEPLOYMENT_PROMOTE, txn_fn)
        return _result(index, evaluation, None)

    # -- manual allocation health -----------------------------------------------------

    def set_alloc_health(
        self,
        deployment_id: str,
        healthy: Sequence[str],
        unhealthy: Sequence[str],
        failure: StatusUpdate | None,
    ) -> WriteResult:
        def txn_fn(txn: Txn) -> tuple[Row, int | None]:
            d = _active(
                txn, deployment_id, "can't set health of allocations for a terminal deployment"
            )
            now = time.time_ns()
            stamp = ns_to_rfc3339(now)
            for ids, flag in ((healthy, True), (unhealthy, False)):
                for alloc_id in ids:
                    alloc = txn.get(ALLOCS, (alloc_id,))
                    if alloc is None or alloc.get("DeploymentID") != d["ID"]:
                        raise RPCError(f'unknown allocation "{alloc_id}"')
                    status = {"Healthy": flag, "Timestamp": stamp, "ModifyIndex": txn.index}
                    update_deployment_with_alloc(txn, alloc, status, now)
                    a = dict(alloc)
                    a["DeploymentStatus"] = {**(a.get("DeploymentStatus") or {}), **status}
                    a["ModifyIndex"] = txn.index
                    a["ModifyTime"] = now
                    txn.put(ALLOCS, (alloc_id,), a)
            reverted = None
            row = txn.get(DEPLOYMENTS, (d["ID"],))
            if failure is not None and row is not None:
                d = thaw(row)  # the counters above changed it
                d["Status"] = failure.status
                d["StatusDescription"] = failure.description
                _put_deployment(txn, d, now)
                reverted = _revert(txn, d, failure.revert_to)
            return _eval(txn, d), reverted

        (evaluation, reverted), index = self._store.write(MSG_DEPLOYMENT_ALLOC_HEALTH, txn_fn)
        return _result(index, evaluation, reverted)

    # -- replacements and evaluations -------------------------------------------------

    def mark_for_reschedule(self, deployment_id: str, alloc_ids: Sequence[str]) -> int:
        """DesiredTransition.Reschedule on unhealthy allocs, plus an eval to replace them."""

        def txn_fn(txn: Txn) -> None:
            row = txn.get(DEPLOYMENTS, (deployment_id,))
            if row is None:
                return
            now = time.time_ns()
            for alloc_id in alloc_ids:
                alloc = txn.get(ALLOCS, (alloc_id,))
                if alloc is None:
                    continue
                a = dict(alloc)
                a["DesiredTransition"] = {**(a.get("DesiredTransition") or {}), "Reschedule": True}
                a["ModifyIndex"] = txn.index
                a["ModifyTime"] = now
                txn.put(ALLOCS, (alloc_id,), a)
            _eval(txn, thaw(row))

        return self._store.write(MSG_ALLOC_DESIRED_TRANSITION, txn_fn)[1]

    def create_evals(self, evals: Sequence[dict[str, Any]]) -> int:
        def txn_fn(txn: Txn) -> None:
            for evaluation in evals:
                upsert_eval(txn, evaluation)

        return self._store.write(MSG_EVAL_UPDATE, txn_fn)[1]


def _active(txn: Txn, deployment_id: str, terminal_error: str) -> dict[str, Any]:
    row = txn.get(DEPLOYMENTS, (deployment_id,))
    if row is None:
        raise RPCError(ERR_NOT_FOUND, 404)
    if not deployment_active(row):
        raise RPCError(terminal_error)
    d: dict[str, Any] = thaw(row)
    return d


def _revert(txn: Txn, d: dict[str, Any], version: int | None) -> int | None:
    """Auto-revert in the failure's own write; only while the failed version is still the
    job's current one (a newer version already replaced it otherwise)."""
    if version is None:
        return None
    job = txn.get(JOBS, (d["Namespace"], d["JobID"]))
    if job is None or int(job["Version"]) != int(d["JobVersion"]):
        return None
    copy_version_as_new(txn, d["Namespace"], d["JobID"], version)
    return version


def _put_deployment(txn: Txn, d: dict[str, Any], now: int) -> None:
    d["ModifyIndex"] = txn.index
    d["ModifyTime"] = now
    txn.put(DEPLOYMENTS, (d["ID"],), d)


def _eval(txn: Txn, d: dict[str, Any]) -> Row:
    job = txn.get(JOBS, (d["Namespace"], d["JobID"]))
    return upsert_eval(txn, new_watcher_eval(d, job))


def _result(index: int, evaluation: Row | None, reverted: int | None) -> WriteResult:
    if evaluation is None:
        return WriteResult(index, reverted_job_version=reverted)
    return WriteResult(index, evaluation["ID"], int(evaluation["CreateIndex"]), reverted)
