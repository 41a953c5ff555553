"""Allocation-set helpers for the reconciler: name index, filters, rescheduling.

Mirrors scheduler/reconciler/{allocs,filters}.go and the reschedule methods of structs/alloc.go.

Go iterates maps in random order; every helper here iterates in name-index-then-ID order
instead, so the reconciler's choices are deterministic and testable.
"""

from __future__ import annotations

from typing import Any

from nomadpaas.agent.structs.alloc import (
    ALLOC_CLIENT_FAILED,
    ALLOC_CLIENT_LOST,
    ALLOC_DESIRED_EVICT,
    ALLOC_DESIRED_STOP,
    Alloc,
    alloc_index,
    alloc_name,
    alloc_terminal,
    last_event_time_ns,
    ran_successfully,
    server_terminal,
)
from nomadpaas.agent.structs.deployment import Deployment, deployment_active
from nomadpaas.agent.structs.duration import NS_PER_S
from nomadpaas.agent.structs.job import JOB_TYPE_BATCH, lookup_group

RESCHEDULE_WINDOW_NS = 1 * NS_PER_S  # failures this close to their reschedule time go now
MAX_PAST_RESCHEDULE_EVENTS = 5  # unlimited policies keep only the latest events
LAST_RESCHEDULE_OK = "ok"


def ordered(allocs: list[Alloc]) -> list[Alloc]:
    """Allocations by name index, then ID (Go's nameOrder plus a deterministic tie-break)."""
    return sorted(allocs, key=lambda a: (alloc_index(a.get("Name", "")), a["ID"]))


class AllocNameIndex:
    """Which `<job>.<group>[i]` indexes are taken (reconciler AllocNameIndex)."""

    def __init__(self, job_id: str, group: str, count: int, allocs: list[Alloc]) -> None:
        self.job_id, self.group, self.count = job_id, group, count
        self.used: set[int] = set()
        self.duplicates: dict[int, int] = {}
        for alloc in allocs:
            idx = alloc_index(alloc.get("Name", ""))
            if idx < 0:
                continue
            if idx in self.used:
                self.duplicates[idx] = self.duplicates.get(idx, 0) + 1
            self.used.add(idx)

    def name(self, idx: int) -> str:
        return alloc_name(self.job_id, self.group, idx)

    def highest(self, n: int) -> set[str]:
        """The n highest taken names, released from the index."""
        out: set[str] = set()
        for idx in sorted(self.used, reverse=True):
            if len(out) >= n:
                break
            self.used.discard(idx)
            out.add(self.name(idx))
        return out

    def unset(self, idx: int) -> None:
        if self.duplicates.get(idx):
            self.duplicates[idx] -= 1
        else:
            self.used.discard(idx)

    def next(self, n: int) -> list[str]:
        """n names for new placements: lowest free indexes below count, then overlapping from 0."""
        out: list[str] = []
        for idx in range(self.count):
            if len(out) == n:
                return out
            if idx not in self.used:
                self.used.add(idx)
                out.append(self.name(idx))
        i = 0
        while len(out) < n:
            self.used.add(i)
            out.append(self.name(i))
            i += 1
        return out

    def next_canaries(self, n: int, existing: list[Alloc], destructive: list[Alloc]) -> list[str]:
        """n canary names: indexes being replaced first, then free ones, then count, count+1, ..."""
        taken = {a["Name"] for a in existing}
        out: list[str] = []
        destructive_idx = sorted(
            {alloc_index(a["Name"]) for a in destructive} & set(range(self.count))
        )
        free = [i for i in range(self.count) if i not in self.used]
        for idx in [*destructive_idx, *free]:
            if len(out) == n:
                return out
            name = self.name(idx)
            if name not in taken and name not in out:
                self.used.add(idx)
                out.append(name)
        extra = n - len(out)
        out.extend(self.name(i) for i in range(self.count, self.count + extra))
        return out


def alloc_job(alloc: Alloc, job: dict[str, Any]) -> dict[str, Any]:
    """The job an allocation was placed from (the current job if the alloc carries none)."""
    return alloc.get("Job") or job


def reschedule_policy(alloc: Alloc, job: dict[str, Any]) -> dict[str, Any] | None:
    group = lookup_group(alloc_job(alloc, job), alloc["TaskGroup"])
    return None if group is None else group.get("ReschedulePolicy")


def _transition(alloc: Alloc, key: str) -> bool:
    return bool((alloc.get("DesiredTransition") or {}).get(key))


def last_reschedule_failed(alloc: Alloc) -> bool:
    tracker = alloc.get("RescheduleTracker") or {}
    last = tracker.get("LastReschedule") or ""
    return last not in ("", LAST_RESCHEDULE_OK)


def should_filter(alloc: Alloc, is_batch: bool) -> tuple[bool, bool]:
    """(untainted, ignore) for one allocation (filters.go shouldFilter)."""
    desired, client = alloc.get("DesiredStatus"), alloc.get("ClientStatus")
    if is_batch:
        if _transition(alloc, "Reschedule"):
            return False, False
        if desired == ALLOC_DESIRED_STOP:
            if ran_successfully(alloc):
                return True, False
            return (False, False) if last_reschedule_failed(alloc) else (False, True)
        if desired == ALLOC_DESIRED_EVICT:
            return False, True
        return (False, False) if client == ALLOC_CLIENT_FAILED else (True, False)
    if desired in (ALLOC_DESIRED_STOP, ALLOC_DESIRED_EVICT):
        return (False, False) if last_reschedule_failed(alloc) else (False, True)
    if client in ("complete", ALLOC_CLIENT_LOST):
        return False, True
    return False, False


def next_delay_ns(alloc: Alloc, job: dict[str, Any]) -> int:
    """Delay before this failed alloc may be replaced, by the policy's delay function."""
    policy = reschedule_policy(alloc, job)
    if policy is None:
        return 0
    delay = int(policy.get("Delay") or 0)
    events = (alloc.get("RescheduleTracker") or {}).get("Events") or []
    if not events:
        return delay
    func, max_delay = policy.get("DelayFunction"), int(policy.get("MaxDelay") or 0)
    if func == "exponential":
        delay = int(events[-1]["Delay"]) * 2
    elif func == "fibonacci":
        if len(events) >= 2:
            n1, n2 = int(events[-1]["Delay"]), int(events[-2]["Delay"])
            # A series that hit MaxDelay and was reset starts over.
            delay = n1 if (n2 == max_delay and n1 == policy.get("Delay")) else n1 + n2
    else:
        return delay
    if max_delay > 0 and delay > max_delay:
        delay = max_delay
        since_last = last_event_time_ns(alloc) - int(events[-1]["RescheduleTime"])
        if since_last > delay:
            delay = int(policy.get("Delay") or 0)
    return delay


def next_reschedule_time(alloc: Alloc, job: dict[str, Any]) -> tuple[int, bool]:
    """(time in ns, eligible) of the next reschedule (Allocation.NextRescheduleTime)."""
    policy = reschedule_policy(alloc, job)
    fail_time = last_event_time_ns(alloc)
    if policy is None or (not policy.get("Attempts") and not policy.get("Unlimited")):
        return 0, False
    rescheduled_batch = alloc_job(alloc, job).get("Type") == JOB_TYPE_BATCH and _transition(
        alloc, "Reschedule"
    )
    if (
        (alloc.get("DesiredStatus") == ALLOC_DESIRED_STOP and not last_reschedule_failed(alloc))
        or (
            not rescheduled_batch
            and alloc.get("ClientStatus") not in (ALLOC_CLIENT_FAILED, ALLOC_CLIENT_LOST)
        )
        or fail_time == 0
    ):
        return 0, False
    delay = next_delay_ns(alloc, job)
    attempts, interval = int(policy.get("Attempts") or 0), int(policy.get("Interval") or 0)
    tracker = alloc.get("RescheduleTracker")
    eligible = bool(policy.get("Unlimited")) or (attempts > 0 and tracker is None)
    if attempts > 0 and tracker is not None and tracker.get("Events") is not None:
        attempted = sum(
            1 for e in tracker["Events"] if fail_time - int(e["RescheduleTime"]) < interval
        )
        eligible = attempted < attempts and delay < interval
    return fail_time + delay, eligible


def filter_rescheduleable(
    allocs: list[Alloc],
    job: dict[str, Any],
    *,
    is_batch: bool,
    now_ns: int,
    eval_id: str,
    deployment: Deployment | None,
) -> tuple[list[Alloc], list[Alloc], list[tuple[Alloc, int]]]:
    """Split into (untainted, now, [(later, when)]) (filterByRescheduleable)."""
    untainted: list[Alloc] = []
    now: list[Alloc] = []
    later: list[tuple[Alloc, int]] = []
    for alloc in ordered(allocs):
        if alloc.get("NextAllocation") and alloc_terminal(alloc):
            continue  # already replaced
        is_untainted, ignore = should_filter(alloc, is_batch)
        if is_untainted:
            untainted.append(alloc)
            continue
        if ignore:
            continue
        in_active_deployment = (
            deployment is not None
            and alloc.get("DeploymentID") == deployment["ID"]
            and deployment_active(deployment)
            and not _transition(alloc, "Reschedule")
        )
        eligible_now = eligible_later = False
        when = 0
        if not in_active_deployment:
            if _transition(alloc, "ForceReschedule") and alloc.get("ClientStatus") in (
                "complete",
                "failed",
                "lost",
            ):
                eligible_now = True
            when, eligible = next_reschedule_time(alloc, job)
            followup = alloc.get("FollowupEvalID") or ""
            if eligible and (followup == eval_id or when - now_ns <= RESCHEDULE_WINDOW_NS):
                eligible_now = True
            elif eligible and not followup:
                eligible_later = True
        if eligible_now:
            now.append(alloc)
            continue
        untainted.append(alloc)
        if eligible_later:
            later.append((alloc, when))
    return untainted, now, later


def new_reschedule_tracker(prev: Alloc, job: dict[str, Any], now_ns: int) -> dict[str, Any]:
    """The RescheduleTracker of `prev`'s replacement (generic_sched updateRescheduleTracker)."""
    policy = reschedule_policy(prev, job) or {}
    past = (prev.get("RescheduleTracker") or {}).get("Events") or []
    if policy.get("Attempts", 0) > 0:
        interval = int(policy.get("Interval") or 0)
        kept = [e for e in past if now_ns - int(e["RescheduleTime"]) <= interval]
    else:
        kept = past[-MAX_PAST_RESCHEDULE_EVENTS:]
    event = {
        "RescheduleTime": now_ns,
        "PrevAllocID": prev["ID"],
        "PrevNodeID": prev.get("NodeID", ""),
        "Delay": next_delay_ns(prev, job),
    }
    return {"Events": [*kept, event], "LastReschedule": ""}


def filter_server_terminal(allocs: list[Alloc]) -> list[Alloc]:
    """Drop server-terminal allocs, but keep batch ones not marked for reschedule (they count)."""
    return [
        a
        for a in allocs
        if not server_terminal(a)
        or ((a.get("Job") or {}).get("Type") == JOB_TYPE_BATCH and not _transition(a, "Reschedule"))
    ]


def is_healthy(alloc: Alloc) -> bool:
    return (alloc.get("DeploymentStatus") or {}).get("Healthy") is True


def is_unhealthy(alloc: Alloc) -> bool:
    return (alloc.get("DeploymentStatus") or {}).get("Healthy") is False


def is_canary(alloc: Alloc) -> bool:
    return bool((alloc.get("DeploymentStatus") or {}).get("Canary"))
