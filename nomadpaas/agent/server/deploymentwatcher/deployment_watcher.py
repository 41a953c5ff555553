"""Watches one deployment on its own thread: reads through blocking queries, decides
(decisions.py) and writes only through `DeploymentTriggers`; mirrors
nomad/deploymentwatcher/deployment_watcher.go.

The loop: block until the deployment or one of its allocations changes (or the next
progress deadline comes), then fail / auto-revert, mark unhealthy allocations for
replacement, auto-promote, or queue an evaluation on the batcher. It ends when the
deployment is no longer active. The API operations (promote, pause, fail, manual
health) are functions over the same view, so they share the rollback rules.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nomadpaas.agent.server.deploymentwatcher.decisions import (
    Decision,
    StatusUpdate,
    View,
    decide,
    failure,
)
from nomadpaas.agent.server.errors import RPCError
from nomadpaas.agent.server.state import lookups
from nomadpaas.agent.server.state.schema import DEPLOYMENTS, JOBS
from nomadpaas.agent.server.state.state_store import Row, Snapshot
from nomadpaas.agent.structs.deployment import (
    DEPLOYMENT_STATUS_PAUSED,
    DEPLOYMENT_STATUS_RUNNING,
    DESCRIPTION_FAILED_ALLOCATIONS,
    DESCRIPTION_FAILED_BY_USER,
    DESCRIPTION_PAUSED,
    DESCRIPTION_RUNNING,
    DESCRIPTION_RUNNING_AUTO_PROMOTION,
    DESCRIPTION_RUNNING_NEEDS_PROMOTION,
    deployment_active,
    has_auto_promote,
    requires_promotion,
)
from nomadpaas.agent.structs.duration import NS_PER_S
from nomadpaas.agent.structs.evaluation import TRIGGER_DEPLOYMENT_WATCHER, new_evaluation

log = logging.getLogger("nomadpaas.agent.server.deploymentwatcher")

WATCH_S = 1.0  # longest blocking wait: bounds how long stop() and deadlines take
DEADLINE_SLACK_S = 0.01  # wake just after a deadline, not just before it
ERR_FAIL_TERMINAL = "can't fail terminal deployment"
ERR_NO_IDS = "must specify at least one healthy/unhealthy allocation ID"


@dataclass(frozen=True)
class WriteResult:
    """DeploymentUpdateResponse."""

    index: int
    eval_id: str = ""
    eval_create_index: int = 0
    reverted_job_version: int | None = None

    def response(self) -> dict[str, Any]:
        return {
            "EvalID": self.eval_id,
            "EvalCreateIndex": self.eval_create_index,
            "DeploymentModifyIndex": self.index,
            "RevertedJobVersion": self.reverted_job_version,
            "Index": self.index,
        }


class DeploymentTriggers(Protocol):
    """Every write a watcher makes (Nomad's deploymentTriggers)."""

    def update_deployment_status(
        self,
        update: StatusUpdate,
        *,
        terminal_error: str,
        create_eval: bool = True,
        reset_progress: bool = False,
    ) -> WriteResult: ...

    def promote(
        self, deployment_id: str, all_groups: bool, groups: Sequence[str]
    ) -> WriteResult: ...

    def set_alloc_health(
        self,
        deployment_id: str,
        healthy: Sequence[str],
        unhealthy: Sequence[str],
        failure: StatusUpdate | None,
    ) -> WriteResult: ...

    def mark_for_reschedule(self, deployment_id: str, alloc_ids: Sequence[str]) -> int: ...


class StateReader(Protocol):
    def snapshot(self) -> Snapshot: ...

    def blocking_query(self, query: Any, min_index: int, timeout: float) -> tuple[Any, int]: ...


class EvalQueue(Protocol):
    def add(self, evaluation: dict[str, Any]) -> None: ...


def running_description(deployment: Row) -> str:
    """`Deployment is running`, or the promotion variant while canaries wait."""
    if requires_promotion(deployment):
        if has_auto_promote(deployment):
            return DESCRIPTION_RUNNING_AUTO_PROMOTION
        return DESCRIPTION_RUNNING_NEEDS_PROMOTION
    return DESCRIPTION_RUNNING


def new_watcher_eval(deployment: Row, job: Row | None) -> dict[str, Any]:
    """A `deployment-watcher` evaluation for the deployment's job."""
    source: dict[str, Any] = (
        dict(job)
        if job is not None
        else {"ID": deployment["JobID"], "Namespace": deployment["Namespace"], "Type": "service"}
    )
    return new_evaluation(
        eval_id=str(uuid.uuid4()),
        job=source,
        triggered_by=TRIGGER_DEPLOYMENT_WATCHER,
        now_ns=time.time_ns(),
        priority=int(deployment.get("EvalPriority") or 0) or None,
        deployment_id=deployment["ID"],
    )


def read_view(snap: Snapshot, deployment_id: str) -> tuple[View | None, int]:
    """The watcher's blocking query: the deployment, its allocs, the job, its versions
    and its latest evaluation; the index moves when the deployment or an alloc does."""
    d = snap.get(DEPLOYMENTS, (deployment_id,))
    if d is None:
        return None, snap.table_index(DEPLOYMENTS)
    allocs = lookups.allocs_by_deployment(snap, deployment_id)
    ns, job_id = d["Namespace"], d["JobID"]
    evals = lookups.evals_by_job(snap, ns, job_id)
    latest_eval = max(
        (int(e.get("SnapshotIndex") or 0) or int(e["CreateIndex"]) for e in evals), default=0
    )
    view = View(
        deployment=d,
        allocs=allocs,
        job=snap.get(JOBS, (ns, job_id)),
        versions=lookups.job_versions(snap, ns, job_id),
        latest_eval_index=latest_eval,
    )
    index = max([int(d["ModifyIndex"]), *(int(a["ModifyIndex"]) for a in allocs)])
    return view, index


def require_view(snap: Snapshot, deployment_id: str) -> View:
    view, _ = read_view(snap, deployment_id)
    if view is None:
        raise RPCError("deployment not found", 404)
    return view


class DeploymentWatcher:
    """One deployment's watcher thread; see the module docstring."""

    def __init__(
        self,
        store: StateReader,
        triggers: DeploymentTriggers,
        evals: EvalQueue,
        deployment_id: str,
    ) -> None:
        self.deployment_id = deployment_id
        self._store = store
        self._triggers = triggers
        self._evals = evals
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"deploy-{deployment_id[:8]}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        index, timeout = 0, WATCH_S
        while not self._stop.is_set():
            asked, last = time.monotonic(), index
            try:
                view, index = self._store.blocking_query(
                    lambda snap: read_view(snap, self.deployment_id), index, timeout
                )
            except RuntimeError:  # the store closed under us
                return
            if self._stop.is_set() or view is None or not deployment_active(view.deployment):
                return
            if index == last and time.monotonic() - asked < timeout / 2:
                # Answered at once with nothing new: the store is shutting down and answers
                # every blocking query at once. Wait for stop() instead of spinning.
                self._stop.wait(timeout)
                continue
            now = time.time_ns()
            decision = decide(view, now)
            try:
                self._act(view, decision)
            except RPCError as err:  # e.g. it turned terminal between read and write
                log.info("deployment %s: %s", self.deployment_id, err.message)
            except RuntimeError:
                return
            timeout = WATCH_S
            if decision.next_deadline_ns is not None:
                left = (decision.next_deadline_ns - now) / NS_PER_S + DEADLINE_SLACK_S
                timeout = min(max(left, DEADLINE_SLACK_S), WATCH_S)

    def _act(self, view: View, decision: Decision) -> None:
        if decision.fail is not None:
            log.info("deployment %s: %s", self.deployment_id, decision.fail.description)
            self._triggers.update_deployment_status(decision.fail, terminal_error=ERR_FAIL_TERMINAL)
            return
        if decision.reschedule:
            self._triggers.mark_for_reschedule(self.deployment_id, decision.reschedule)
        if decision.promote:
            self._triggers.promote(self.deployment_id, True, ())
        elif decision.create_eval:
            self._evals.add(new_watcher_eval(view.deployment, view.job))


# -- the Deployment RPC's operations (nomad/deployment_endpoint.go → the watcher) --------


def promote(
    triggers: DeploymentTriggers, deployment_id: str, all_groups: bool, groups: Sequence[str]
) -> WriteResult:
    return triggers.promote(deployment_id, all_groups, groups)


def pause(
    store: StateReader, triggers: DeploymentTriggers, deployment_id: str, paused: bool
) -> WriteResult:
    view = require_view(store.snapshot(), deployment_id)
    if paused:
        update = StatusUpdate(deployment_id, DEPLOYMENT_STATUS_PAUSED, DESCRIPTION_PAUSED)
        return triggers.update_deployment_status(
            update, terminal_error="can't pause terminal deployment", create_eval=False
        )
    update = StatusUpdate(
        deployment_id, DEPLOYMENT_STATUS_RUNNING, running_description(view.deployment)
    )
    return triggers.update_deployment_status(
        update, terminal_error="can't resume terminal deployment", reset_progress=True
    )


def fail(store: StateReader, triggers: DeploymentTriggers, deployment_id: str) -> WriteResult:
    view = require_view(store.snapshot(), deployment_id)
    revert = any(s.get("AutoRevert") for s in view.deployment["TaskGroups"].values())
    update = failure(view, DESCRIPTION_FAILED_BY_USER, revert)
    return triggers.update_deployment_status(
        update, terminal_error="can't fail terminal deployment"
    )


def set_alloc_health(
    store: StateReader,
    triggers: DeploymentTriggers,
    deployment_id: str,
    healthy: Sequence[str],
    unhealthy: Sequence[str],
) -> WriteResult:
    if not healthy and not unhealthy:
        raise RPCError(ERR_NO_IDS)
    view = require_view(store.snapshot(), deployment_id)
    update = None
    if unhealthy:
        groups = {a["TaskGroup"] for a in view.allocs if a["ID"] in set(unhealthy)}
        states = view.deployment["TaskGroups"]
        revert = any((states.get(g) or {}).get("AutoRevert") for g in groups)
        update = failure(view, DESCRIPTION_FAILED_ALLOCATIONS, revert)
    return triggers.set_alloc_health(deployment_id, healthy, unhealthy, update)
