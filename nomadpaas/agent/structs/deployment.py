"""Deployments and their per-group state; mirrors nomad/structs/deployment.go."""

from __future__ import annotations

from typing import Any

from nomadpaas.agent.structs.alloc import ZERO_TIME

Deployment = dict[str, Any]

DEPLOYMENT_STATUS_RUNNING = "running"
DEPLOYMENT_STATUS_PAUSED = "paused"
DEPLOYMENT_STATUS_FAILED = "failed"
DEPLOYMENT_STATUS_SUCCESSFUL = "successful"
DEPLOYMENT_STATUS_CANCELLED = "cancelled"
DEPLOYMENT_STATUS_PENDING = "pending"
DEPLOYMENT_STATUS_BLOCKED = "blocked"
DEPLOYMENT_STATUS_UNBLOCKING = "unblocking"
DEPLOYMENT_STATUS_INITIALIZING = "initializing"
DEPLOYMENT_ACTIVE_STATUSES = (
    DEPLOYMENT_STATUS_RUNNING,
    DEPLOYMENT_STATUS_PAUSED,
    DEPLOYMENT_STATUS_BLOCKED,
    DEPLOYMENT_STATUS_UNBLOCKING,
    DEPLOYMENT_STATUS_INITIALIZING,
    DEPLOYMENT_STATUS_PENDING,
)

DESCRIPTION_RUNNING = "Deployment is running"
DESCRIPTION_RUNNING_NEEDS_PROMOTION = "Deployment is running but requires manual promotion"
DESCRIPTION_RUNNING_AUTO_PROMOTION = "Deployment is running pending automatic promotion"
DESCRIPTION_PAUSED = "Deployment is paused"
DESCRIPTION_SUCCESSFUL = "Deployment completed successfully"
DESCRIPTION_STOPPED_JOB = "Cancelled because job is stopped"
DESCRIPTION_NEWER_JOB = "Cancelled due to newer version of job"
DESCRIPTION_FAILED_ALLOCATIONS = "Failed due to unhealthy allocations"
DESCRIPTION_PROGRESS_DEADLINE = "Failed due to progress deadline"
DESCRIPTION_FAILED_BY_USER = "Deployment marked as failed"


def rollback_suffix(version: int) -> str:
    """Appended to a failure description when auto-revert registers an older version."""
    return f" - rolling back to job version {version}"


def no_rollback_same_spec_suffix(version: int) -> str:
    """Appended when the stable version has the current spec, so nothing is reverted."""
    return (
        f" - not rolling back to stable job version {version} as current job has same specification"
    )


NO_STABLE_VERSION_SUFFIX = " - no stable job version to auto revert to"


def new_deployment(
    *, deployment_id: str, job: dict[str, Any], eval_priority: int, now_ns: int
) -> Deployment:
    """A running deployment of the job's current version (structs.NewDeployment)."""
    return {
        "ID": deployment_id,
        "Namespace": job.get("Namespace", "default"),
        "JobID": job["ID"],
        "JobVersion": job.get("Version", 0),
        "JobModifyIndex": job.get("ModifyIndex", 0),
        "JobSpecModifyIndex": job.get("JobModifyIndex", 0),
        "JobCreateIndex": job.get("CreateIndex", 0),
        "IsMultiregion": False,
        "TaskGroups": {},
        "Status": DEPLOYMENT_STATUS_RUNNING,
        "StatusDescription": DESCRIPTION_RUNNING,
        "EvalPriority": eval_priority,
        "CreateIndex": 0,
        "ModifyIndex": 0,
        "CreateTime": now_ns,
        "ModifyTime": now_ns,
    }


def new_deployment_state(update: dict[str, Any] | None = None) -> dict[str, Any]:
    """A group's DeploymentState, seeded from its Update block."""
    u = update or {}
    return {
        "AutoRevert": bool(u.get("AutoRevert")),
        "AutoPromote": bool(u.get("AutoPromote")),
        "ProgressDeadline": int(u.get("ProgressDeadline") or 0),
        "RequireProgressBy": ZERO_TIME,
        "Promoted": False,
        "PlacedCanaries": None,
        "DesiredCanaries": 0,
        "DesiredTotal": 0,
        "PlacedAllocs": 0,
        "HealthyAllocs": 0,
        "UnhealthyAllocs": 0,
    }


def deployment_active(deployment: Deployment | None) -> bool:
    """Deployment.Active: running, paused, or a multiregion in-between state."""
    return deployment is not None and deployment.get("Status") in DEPLOYMENT_ACTIVE_STATUSES


def requires_promotion(deployment: Deployment) -> bool:
    """Some group wants canaries and is not promoted yet."""
    return any(
        s.get("DesiredCanaries", 0) > 0 and not s.get("Promoted")
        for s in deployment["TaskGroups"].values()
    )


def has_auto_promote(deployment: Deployment) -> bool:
    """Every canary group has AutoPromote (else there is no automatic promotion)."""
    groups = [s for s in deployment["TaskGroups"].values() if s.get("DesiredCanaries", 0) > 0]
    return bool(groups) and all(s.get("AutoPromote") for s in groups)
