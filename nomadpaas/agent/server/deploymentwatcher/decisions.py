"""What a deployment watcher should do next, decided purely from one snapshot; mirrors the
decision half of nomad/deploymentwatcher/deployment_watcher.go (handleAllocUpdate,
shouldFail, getDeploymentProgressCutoff, autoPromoteDeployment, latestStableJob).

`decide(view, now_ns)` → `Decision`, in Nomad's order of precedence:
  1. an unhealthy allocation: fail at once (ProgressDeadline 0, or no reschedule attempt
     left), else mark it for rescheduling and carry on;
  2. the progress deadline passed for a group that has too few healthy allocations: fail;
  3. every canary group auto-promotes and exactly DesiredCanaries canaries are healthy:
     promote (#8150: replaced canaries stay in PlacedCanaries, so count, don't compare);
  4. an allocation turned healthy after the latest evaluation: create one (batched), so
     the rolling update goes on and the scheduler can mark the deployment successful.
A failure may auto-revert to the latest `Stable` version (`rollback`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nomadpaas.agent.structs.alloc import ZERO_TIME, alloc_terminal, rfc3339_to_ns, server_terminal
from nomadpaas.agent.structs.deployment import (
    DEPLOYMENT_STATUS_FAILED,
    DEPLOYMENT_STATUS_RUNNING,
    DESCRIPTION_FAILED_ALLOCATIONS,
    DESCRIPTION_PROGRESS_DEADLINE,
    NO_STABLE_VERSION_SUFFIX,
    has_auto_promote,
    no_rollback_same_spec_suffix,
    requires_promotion,
    rollback_suffix,
)
from nomadpaas.agent.structs.job import job_spec_changed, lookup_group

Row = Any


@dataclass(frozen=True)
class View:
    """One consistent read of everything a watcher looks at."""

    deployment: Row
    allocs: Sequence[Row]
    job: Row | None  # the job as it is now (may be newer than the deployment)
    versions: Sequence[Row]  # retained versions, highest first
    latest_eval_index: int


@dataclass(frozen=True)
class StatusUpdate:
    """A deployment status change, with the job version to revert to, if any."""

    deployment_id: str
    status: str
    description: str
    revert_to: int | None = None


@dataclass
class Decision:
    fail: StatusUpdate | None = None
    promote: bool = False
    reschedule: list[str] = field(default_factory=list)
    create_eval: bool = False
    next_deadline_ns: int | None = None  # when to look again even if nothing changes


def decide(view: View, now_ns: int) -> Decision:
    d = view.deployment
    out = Decision()
    groups = d["TaskGroups"]
    rollback_wanted = False
    fail_now = False
    # Every alloc of the deployment, failed ones included (they are the point), as
    # handleAllocUpdate does; only allocs the server already stopped are left out.
    for alloc in sorted(view.allocs, key=lambda a: a["ID"]):
        if server_terminal(alloc):
            continue
        state = groups.get(alloc["TaskGroup"])
        health = (alloc.get("DeploymentStatus") or {}).get("Healthy")
        if state is None or health is not False:
            continue
        if int(state.get("ProgressDeadline") or 0) == 0 or not reschedule_left(alloc, view.job):
            fail_now = True
            rollback_wanted = rollback_wanted or bool(state.get("AutoRevert"))
        elif not (alloc.get("DesiredTransition") or {}).get("Reschedule"):
            out.reschedule.append(alloc["ID"])
    if fail_now:
        out.fail = failure(view, DESCRIPTION_FAILED_ALLOCATIONS, rollback_wanted)
        return out
    cutoff, failing = progress_cutoff(d)
    if d["Status"] == DEPLOYMENT_STATUS_RUNNING and cutoff:
        if now_ns >= cutoff:
            revert = any(groups[g].get("AutoRevert") for g in failing)
            out.fail = failure(view, DESCRIPTION_PROGRESS_DEADLINE, revert)
            return out
        out.next_deadline_ns = cutoff
    if d["Status"] == DEPLOYMENT_STATUS_RUNNING and should_auto_promote(d, view.allocs):
        out.promote = True
    out.create_eval = any(
        (a.get("DeploymentStatus") or {}).get("Healthy") is True
        and int((a.get("DeploymentStatus") or {}).get("ModifyIndex") or 0) > view.latest_eval_index
        for a in view.allocs
    )
    return out


def reschedule_left(alloc: Row, job: Row | None) -> bool:
    """Whether the alloc's ReschedulePolicy allows another attempt now."""
    source = alloc.get("Job") or job or {}
    group = lookup_group(source, alloc["TaskGroup"]) or {}
    policy = group.get("ReschedulePolicy") or {}
    if policy.get("Unlimited"):
        return True
    attempts = int(policy.get("Attempts") or 0)
    if attempts <= 0:
        return False
    interval = int(policy.get("Interval") or 0)
    events = (alloc.get("RescheduleTracker") or {}).get("Events") or []
    now = max((int(e.get("RescheduleTime") or 0) for e in events), default=0)
    recent = [e for e in events if now - int(e.get("RescheduleTime") or 0) < interval]
    return len(recent) < attempts


def group_done(state: Row) -> bool:
    """Enough healthy allocations: DesiredCanaries while unpromoted, else DesiredTotal."""
    healthy = int(state.get("HealthyAllocs") or 0)
    if int(state.get("DesiredCanaries") or 0) > 0 and not state.get("Promoted"):
        return healthy >= int(state["DesiredCanaries"])
    return healthy >= int(state.get("DesiredTotal") or 0)


def progress_cutoff(deployment: Row) -> tuple[int, list[str]]:
    """The earliest RequireProgressBy among unfinished groups (0: none), and the
    unfinished groups whose deadline is that early or earlier."""
    deadlines = {
        name: rfc3339_to_ns(state.get("RequireProgressBy"))
        for name, state in deployment["TaskGroups"].items()
        if int(state.get("ProgressDeadline") or 0) > 0
        and state.get("RequireProgressBy") not in (None, "", ZERO_TIME)
        and not group_done(state)
    }
    if not deadlines:
        return 0, []
    cutoff = min(deadlines.values())
    return cutoff, sorted(n for n, t in deadlines.items() if t <= cutoff)


def healthy_canaries(state: Row, allocs: Sequence[Row]) -> int:
    placed = set(state.get("PlacedCanaries") or ())
    return sum(
        1
        for a in allocs
        if a["ID"] in placed
        and not alloc_terminal(a)
        and (a.get("DeploymentStatus") or {}).get("Healthy") is True
    )


def should_auto_promote(deployment: Row, allocs: Sequence[Row]) -> bool:
    if not requires_promotion(deployment) or not has_auto_promote(deployment):
        return False
    for state in deployment["TaskGroups"].values():
        desired = int(state.get("DesiredCanaries") or 0)
        if desired == 0 or state.get("Promoted"):
            continue
        if len(state.get("PlacedCanaries") or ()) < desired:
            return False
        if healthy_canaries(state, allocs) != desired:
            return False
    return True


def latest_stable(versions: Sequence[Row]) -> Row | None:
    """The highest retained version marked Stable (versions come highest first)."""
    return next((v for v in versions if v.get("Stable")), None)


def rollback(description: str, job: Row | None, versions: Sequence[Row]) -> tuple[str, int | None]:
    """The failure description with its auto-revert suffix, and the version to revert to."""
    stable = latest_stable(versions)
    if stable is None or job is None:
        return description + NO_STABLE_VERSION_SUFFIX, None
    if not job_spec_changed(job, stable):
        return description + no_rollback_same_spec_suffix(int(stable["Version"])), None
    return description + rollback_suffix(int(stable["Version"])), int(stable["Version"])


def failure(view: View, description: str, revert: bool) -> StatusUpdate:
    d = view.deployment
    revert_to = None
    if revert:
        description, revert_to = rollback(description, view.job, view.versions)
    return StatusUpdate(d["ID"], DEPLOYMENT_STATUS_FAILED, description, revert_to)
