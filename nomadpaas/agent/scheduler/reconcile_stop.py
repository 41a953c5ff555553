"""Which allocations a group stops: lost ones, and any above Count.

Mirrors computeStop in scheduler/reconciler/reconcile_cluster.go.
"""

from __future__ import annotations

from nomadpaas.agent.scheduler.reconcile_results import StopResult
from nomadpaas.agent.scheduler.reconcile_util import AllocNameIndex, ordered
from nomadpaas.agent.structs.alloc import (
    ALLOC_CLIENT_LOST,
    ALLOC_LOST,
    ALLOC_NOT_NEEDED,
    Alloc,
    alloc_index,
    server_terminal,
)


def drop_excess_reschedules(
    count: int,
    untainted: list[Alloc],
    resched_now: list[Alloc],
    canaries: list[Alloc],
    canarying: bool,
) -> tuple[list[Alloc], list[StopResult]]:
    """Stop failed allocs instead of replacing them when the rest already fill Count.

    Deliberate deviation: Nomad's computeStop leaves reschedules out of its count, so a
    count drop that coincides with a failure can run Count+1 allocs until the next
    evaluation. Dropping the highest-indexed failed allocs keeps "never more than Count".
    """
    canary_ids = {a["ID"] for a in canaries} if canarying else set()
    kept = [
        a for a in untainted if a["ID"] not in canary_ids and a.get("ClientStatus") != "unknown"
    ]
    excess = len(kept) + len(resched_now) - count
    if excess <= 0:
        return resched_now, []
    by_index = sorted(resched_now, key=lambda a: (-alloc_index(a["Name"]), a["ID"]))
    dropped = {a["ID"] for a in by_index[:excess]}
    stops = [StopResult(a["ID"], ALLOC_NOT_NEEDED) for a in by_index[:excess]]
    return [a for a in resched_now if a["ID"] not in dropped], stops


def compute_stop(
    count: int,
    name_index: AllocNameIndex,
    untainted: list[Alloc],
    lost: list[Alloc],
    canaries: list[Alloc],
    canarying: bool,
) -> tuple[list[StopResult], list[Alloc]]:
    """Stop lost allocs and any above Count, highest index first (computeStop).

    Returns (stops, the untainted allocs that keep running).
    """
    stop: list[StopResult] = [
        StopResult(a["ID"], ALLOC_LOST, ALLOC_CLIENT_LOST) for a in ordered(lost)
    ]
    canary_ids = {a["ID"] for a in canaries}
    working = [a for a in ordered(untainted) if not (canarying and a["ID"] in canary_ids)]
    known = [a for a in working if a.get("ClientStatus") != "unknown"]
    remove = len(known) - count
    stopped: set[str] = set()

    def take(alloc: Alloc) -> None:
        nonlocal remove
        stopped.add(alloc["ID"])
        stop.append(StopResult(alloc["ID"], ALLOC_NOT_NEEDED))
        remove -= 1

    if remove > 0:
        working = [a for a in working if not server_terminal(a)]
        if not canarying and canaries:
            # After promotion, old allocs sharing a canary's name go first.
            names = {a["Name"] for a in canaries}
            for alloc in working:
                if remove > 0 and alloc["ID"] not in canary_ids and alloc["Name"] in names:
                    take(alloc)
        if remove > 0:
            highest = name_index.highest(remove)
            for alloc in sorted(working, key=lambda a: -alloc_index(a["Name"])):
                if remove > 0 and alloc["ID"] not in stopped and alloc["Name"] in highest:
                    take(alloc)
        for alloc in working:  # duplicate names can leave some over
            if remove > 0 and alloc["ID"] not in stopped:
                take(alloc)
    return stop, [a for a in untainted if a["ID"] not in stopped]
