"""Job.Plan: a dry run of the scheduler for a submitted job, returning what it would do
(DesiredTGUpdates, FailedTGAllocs) and a diff; mirrors Job.Plan in nomad/job_endpoint.go
(which runs the scheduler against a snapshot with a recording planner).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from nomadpaas.agent.scheduler.generic_sched import GenericScheduler
from nomadpaas.agent.scheduler.scheduler import Plan, PlanResult, Row, State
from nomadpaas.agent.server.job_diff import job_diff
from nomadpaas.agent.server.job_endpoint import check_transition, validate_or_raise
from nomadpaas.agent.server.job_register import user_fields
from nomadpaas.agent.server.job_summary import is_parent
from nomadpaas.agent.server.state.schema import JOBS
from nomadpaas.agent.server.state.state_store import StateStore
from nomadpaas.agent.server.worker import SnapshotState
from nomadpaas.agent.structs.alloc import ZERO_TIME
from nomadpaas.agent.structs.evaluation import TRIGGER_JOB_REGISTER, new_evaluation
from nomadpaas.agent.structs.job import JOB_TYPE_BATCH, job_spec_changed, server_fields


class _PlannedState(SnapshotState):
    """The snapshot, but with the planned job in place of the stored one."""

    def __init__(self, base: Any, job: dict[str, Any]) -> None:
        super().__init__(base)
        self._job = job

    def job_by_id(self, namespace: str, job_id: str) -> Row | None:
        if (namespace, job_id) == (self._job["Namespace"], self._job["ID"]):
            return self._job
        return super().job_by_id(namespace, job_id)


class _Recorder:
    """A Planner that applies nothing and remembers the evals it was asked to create."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def submit_plan(self, plan: Plan) -> tuple[PlanResult, State | None]:
        return PlanResult(node_allocation=plan.node_allocation), None

    def update_eval(self, evaluation: dict[str, Any]) -> None:
        return None

    def create_eval(self, evaluation: dict[str, Any]) -> None:
        self.created.append(evaluation)


def plan_job(store: StateStore, job: dict[str, Any], *, diff: bool) -> dict[str, Any]:
    """The JobPlanResponse for a canonicalized `job` (nothing is written)."""
    validate_or_raise(job)
    snap = store.snapshot()
    existing = snap.get(JOBS, (job["Namespace"], job["ID"]))
    check_transition(existing, job)
    spec = user_fields(job)
    if existing is not None and not job_spec_changed(existing, spec):
        planned: dict[str, Any] = dict(existing)
    else:
        index = snap.index + 1
        version = int(existing["Version"]) + 1 if existing is not None else 0
        planned = server_fields(spec, now_ns=time.time_ns(), index=index, version=version)
        planned["CreateIndex"] = existing["CreateIndex"] if existing is not None else index
    annotations: dict[str, Any] = {"DesiredTGUpdates": None, "PreemptedAllocs": None}
    failed = None
    if not is_parent(planned):
        recorder = _Recorder()
        sched = GenericScheduler(
            _PlannedState(snap, planned), recorder, batch=planned["Type"] == JOB_TYPE_BATCH
        )
        sched.eval = new_evaluation(
            eval_id=str(uuid.uuid4()),
            job=planned,
            triggered_by=TRIGGER_JOB_REGISTER,
            now_ns=time.time_ns(),
        )
        sched.eval["AnnotatePlan"] = True
        sched.compute_plan()
        annotations["DesiredTGUpdates"] = sched.desired_tg_updates or None
        failed = sched.failed_tg_allocs or None
    return {
        "Annotations": annotations,
        "FailedTGAllocs": failed,
        "JobModifyIndex": int(existing["JobModifyIndex"]) if existing is not None else 0,
        "CreatedEvals": None,
        "Diff": job_diff(existing, planned) if diff else None,
        "NextPeriodicLaunch": ZERO_TIME,
        "Warnings": "",
        "Index": snap.index,
    }
