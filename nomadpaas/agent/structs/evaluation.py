"""Evaluations: constructor, statuses and TriggeredBy values; mirrors nomad/structs/eval.go.

Evaluations spell `canceled` with one `l` (deployments use `cancelled`).
"""

from __future__ import annotations

from typing import Any

from nomadpaas.agent.structs.alloc import ZERO_TIME

Evaluation = dict[str, Any]

EVAL_STATUS_PENDING = "pending"
EVAL_STATUS_BLOCKED = "blocked"
EVAL_STATUS_COMPLETE = "complete"
EVAL_STATUS_FAILED = "failed"
EVAL_STATUS_CANCELED = "canceled"
EVAL_TERMINAL_STATUSES = (EVAL_STATUS_COMPLETE, EVAL_STATUS_FAILED, EVAL_STATUS_CANCELED)

TRIGGER_JOB_REGISTER = "job-register"
TRIGGER_JOB_DEREGISTER = "job-deregister"
TRIGGER_PERIODIC_JOB = "periodic-job"
TRIGGER_NODE_DRAIN = "node-drain"
TRIGGER_NODE_UPDATE = "node-update"
TRIGGER_ALLOC_STOP = "alloc-stop"
TRIGGER_SCHEDULED = "scheduled"
TRIGGER_ROLLING_UPDATE = "rolling-update"
TRIGGER_DEPLOYMENT_WATCHER = "deployment-watcher"
TRIGGER_FAILED_FOLLOW_UP = "failed-follow-up"
TRIGGER_MAX_PLANS = "max-plan-attempts"
TRIGGER_RETRY_FAILED_ALLOC = "alloc-failure"
TRIGGER_QUEUED_ALLOCS = "queued-allocs"
TRIGGER_PREEMPTION = "preemption"
TRIGGER_JOB_SCALING = "job-scaling"
TRIGGER_MAX_DISCONNECT_TIMEOUT = "max-disconnect-timeout"
TRIGGER_RECONNECT = "reconnect"
TRIGGER_ALLOC_RESCHEDULE = "alloc-reschedule"


def new_evaluation(
    *,
    eval_id: str,
    job: dict[str, Any],
    triggered_by: str,
    now_ns: int,
    priority: int | None = None,
    eval_type: str | None = None,
    deployment_id: str = "",
    wait_until: str = ZERO_TIME,
    previous_eval: str = "",
    status: str = EVAL_STATUS_PENDING,
) -> Evaluation:
    """A pending evaluation for `job`; `eval_type` defaults to the job type.

    Deregister passes `eval_type="service"` whatever the job type, as Nomad does.
    """
    return {
        "ID": eval_id,
        "Namespace": job.get("Namespace", "default"),
        "Priority": priority if priority else job.get("Priority", 50),
        "Type": eval_type or job.get("Type", "service"),
        "TriggeredBy": triggered_by,
        "JobID": job["ID"],
        "JobModifyIndex": job.get("JobModifyIndex", 0),
        "NodeID": "",
        "NodeModifyIndex": 0,
        "DeploymentID": deployment_id,
        "Status": status,
        "StatusDescription": "",
        "Wait": 0,
        "WaitUntil": wait_until,
        "NextEval": "",
        "PreviousEval": previous_eval,
        "BlockedEval": "",
        "RelatedEvals": None,
        "FailedTGAllocs": None,
        "PlanAnnotations": None,
        "ClassEligibility": None,
        "QuotaLimitReached": "",
        "EscapedComputedClass": False,
        "AnnotatePlan": False,
        "QueuedAllocations": None,
        "LeaderACL": "",
        "SnapshotIndex": 0,
        "CreateIndex": 0,
        "ModifyIndex": 0,
        "CreateTime": now_ns,
        "ModifyTime": now_ns,
    }


def eval_terminal(evaluation: Evaluation) -> bool:
    """complete, failed or canceled."""
    return evaluation.get("Status") in EVAL_TERMINAL_STATUSES
