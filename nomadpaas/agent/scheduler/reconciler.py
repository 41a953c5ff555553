"""Pure reconcile: (job, allocs, deployment, now) → what to place, stop and update.

Mirrors scheduler/reconciler/reconcile_cluster.go.

Single-node cut of Nomad's AllocReconciler for service and batch jobs: no tainted nodes,
so no migrations or disconnects; an alloc whose ClientStatus is `lost` is treated as on a
down node (stopped as lost and replaced). The caller (generic scheduler / plan apply)
turns the result into allocations: it appends placed canary IDs to the deployment's
`PlacedCanaries`, sets `DeploymentID` on placements and in-place updates, and resets an
in-place updated alloc's `DeploymentStatus` to null.
"""

from __future__ import annotations

import copy
from typing import Any

from nomadpaas.agent.scheduler import reconcile_util as ru
from nomadpaas.agent.scheduler.reconcile_results import (
    DESIRED_UPDATE_KEYS,
    DeploymentStatusUpdate,
    DestructiveResult,
    PlaceResult,
    ReconcileResults,
    StopResult,
    new_desired_updates,
)
from nomadpaas.agent.scheduler.reconcile_stop import compute_stop, drop_excess_reschedules
from nomadpaas.agent.structs.alloc import (
    ALLOC_CLIENT_LOST,
    ALLOC_LOST,
    ALLOC_NOT_NEEDED,
    ALLOC_RESCHEDULED,
    Alloc,
    alloc_terminal,
    server_terminal,
)
from nomadpaas.agent.structs.deployment import (
    DEPLOYMENT_STATUS_CANCELLED,
    DEPLOYMENT_STATUS_FAILED,
    DEPLOYMENT_STATUS_PAUSED,
    DEPLOYMENT_STATUS_SUCCESSFUL,
    DESCRIPTION_NEWER_JOB,
    DESCRIPTION_RUNNING_AUTO_PROMOTION,
    DESCRIPTION_RUNNING_NEEDS_PROMOTION,
    DESCRIPTION_STOPPED_JOB,
    DESCRIPTION_SUCCESSFUL,
    Deployment,
    deployment_active,
    has_auto_promote,
    new_deployment,
    new_deployment_state,
    requires_promotion,
)
from nomadpaas.agent.structs.job import JOB_TYPE_BATCH, Job, tasks_updated

__all__ = [
    "DESIRED_UPDATE_KEYS",
    "DeploymentStatusUpdate",
    "DestructiveResult",
    "PlaceResult",
    "ReconcileResults",
    "StopResult",
    "reconcile",
]


def reconcile(
    job: Job | None,
    allocs: list[Alloc],
    deployment: Deployment | None,
    now_ns: int,
    *,
    eval_id: str = "",
    eval_priority: int = 0,
    new_deployment_id: str = "",
) -> ReconcileResults:
    """Decide placements, stops and updates for every group of `job` (AllocReconciler.Compute)."""
    return _Reconciler(
        job, allocs, deployment, now_ns, eval_id, eval_priority, new_deployment_id
    ).compute()


class _Reconciler:
    def __init__(
        self,
        job: Job | None,
        allocs: list[Alloc],
        deployment: Deployment | None,
        now_ns: int,
        eval_id: str,
        eval_priority: int,
        new_deployment_id: str,
    ) -> None:
        self.job = job
        self.allocs = allocs
        self.old_deployment: Deployment | None = None
        self.deployment = copy.deepcopy(deployment)
        self.now_ns = now_ns
        self.eval_id = eval_id
        self.eval_priority = eval_priority or (job or {}).get("Priority", 50)
        self.new_deployment_id = new_deployment_id
        self.result = ReconcileResults()
        self.paused = self.failed = False

    def compute(self) -> ReconcileResults:
        job, r = self.job, self.result
        matrix: dict[str, list[Alloc]] = {}
        for alloc in self.allocs:
            matrix.setdefault(alloc["TaskGroup"], []).append(alloc)
        for group in (job or {}).get("TaskGroups") or []:
            matrix.setdefault(group["Name"], [])
        self._cancel_unneeded_deployments()
        if job is None or job.get("Stop"):
            for group, allocs in sorted(matrix.items()):
                live = [a for a in allocs if not alloc_terminal(a)]
                self._updates(group)["Stop"] = len(live)
                r.stop.extend(_stop_all(live))
            return r
        if self.deployment is not None:
            self.paused = self.deployment["Status"] == DEPLOYMENT_STATUS_PAUSED
            self.failed = self.deployment["Status"] == DEPLOYMENT_STATUS_FAILED
        complete = True
        for group, allocs in sorted(matrix.items()):
            complete = self._compute_group(group, allocs) and complete
        if self.deployment is not None and complete and r.deployment is None:
            r.deployment_updates.append(
                DeploymentStatusUpdate(
                    self.deployment["ID"], DEPLOYMENT_STATUS_SUCCESSFUL, DESCRIPTION_SUCCESSFUL
                )
            )
        if r.deployment is not None and requires_promotion(r.deployment):
            auto = has_auto_promote(r.deployment)
            r.deployment["StatusDescription"] = (
                DESCRIPTION_RUNNING_AUTO_PROMOTION if auto else DESCRIPTION_RUNNING_NEEDS_PROMOTION
            )
        return r

    def _updates(self, group: str) -> dict[str, int]:
        return self.result.desired_tg_updates.setdefault(group, new_desired_updates())

    def _cancel_unneeded_deployments(self) -> None:
        d, job = self.deployment, self.job
        if d is None:
            return
        if job is None or job.get("Stop"):
            if deployment_active(d):
                self.result.deployment_updates.append(
                    DeploymentStatusUpdate(
                        d["ID"], DEPLOYMENT_STATUS_CANCELLED, DESCRIPTION_STOPPED_JOB
                    )
                )
            self.old_deployment, self.deployment = d, None
            return
        if d.get("JobCreateIndex") != job.get("CreateIndex") or d.get("JobVersion") != job.get(
            "Version"
        ):
            if deployment_active(d):
                self.result.deployment_updates.append(
                    DeploymentStatusUpdate(
                        d["ID"], DEPLOYMENT_STATUS_CANCELLED, DESCRIPTION_NEWER_JOB
                    )
                )
            self.old_deployment, self.deployment = d, None
        elif d["Status"] == DEPLOYMENT_STATUS_SUCCESSFUL:
            self.old_deployment, self.deployment = d, None

    def _cancel_unneeded_canaries(
        self, group: str, allocs: list[Alloc]
    ) -> tuple[list[Alloc], list[Alloc]]:
        """Stop unpromoted canaries of an old or failed deployment; return (canaries, remaining)."""
        stop_ids: set[str] = set()
        for d in (self.old_deployment, self.deployment if self.failed else None):
            for state in (d or {}).get("TaskGroups", {}).values():
                if not state.get("Promoted"):
                    stop_ids.update(state.get("PlacedCanaries") or [])
        stopped = [a for a in allocs if a["ID"] in stop_ids]
        self._updates(group)["Stop"] += len(stopped)
        self.result.stop.extend(StopResult(a["ID"], ALLOC_NOT_NEEDED) for a in ru.ordered(stopped))
        remaining = [a for a in allocs if a["ID"] not in stop_ids]
        canary_ids: set[str] = set()
        for state in (self.deployment or {}).get("TaskGroups", {}).values():
            canary_ids.update(state.get("PlacedCanaries") or [])
        canaries = [a for a in remaining if a["ID"] in canary_ids]
        lost = [a for a in canaries if _is_lost(a)]
        self.result.stop.extend(StopResult(a["ID"], ALLOC_LOST, ALLOC_CLIENT_LOST) for a in lost)
        lost_ids = {a["ID"] for a in lost}
        return [a for a in canaries if a["ID"] not in lost_ids], [
            a for a in remaining if a["ID"] not in lost_ids
        ]

    def _compute_group(self, group_name: str, all_allocs: list[Alloc]) -> bool:
        job = self.job
        assert job is not None
        upd = self._updates(group_name)
        group = next((g for g in job.get("TaskGroups") or [] if g["Name"] == group_name), None)
        is_batch = job.get("Type") == JOB_TYPE_BATCH
        all_allocs = ru.filter_server_terminal(all_allocs)
        if group is None or group.get("Count", 0) == 0:
            live = [a for a in all_allocs if not alloc_terminal(a)]
            upd["Stop"] += len(live)
            self.result.stop.extend(_stop_all(live))
            return True
        count = int(group["Count"])
        update = group.get("Update")
        strategy_empty = update is None or not update.get("MaxParallel")
        existing_deployment = (
            self.deployment is not None and group_name in self.deployment["TaskGroups"]
        )
        if existing_deployment:
            assert self.deployment is not None
            dstate = self.deployment["TaskGroups"][group_name]
        else:
            dstate = new_deployment_state(None if strategy_empty else update)
        if is_batch:  # terminal batch allocs of older versions no longer count
            older = [a for a in all_allocs if alloc_terminal(a) and _older(a, job)]
            upd["Ignore"] += len(older)
            all_allocs = [a for a in all_allocs if a not in older]
        canaries, all_allocs = self._cancel_unneeded_canaries(group_name, all_allocs)
        lost = [a for a in all_allocs if _is_lost(a)]
        untainted = [a for a in all_allocs if not _is_lost(a)]
        untainted, resched_now, resched_later = ru.filter_rescheduleable(
            untainted,
            job,
            is_batch=is_batch,
            now_ns=self.now_ns,
            eval_id=self.eval_id,
            deployment=self.deployment,
        )
        self.result.reschedule_later.extend((a["ID"], when) for a, when in resched_later)
        name_index = ru.AllocNameIndex(
            job["ID"], group_name, count, [*untainted, *resched_now, *lost]
        )
        canarying = bool(dstate.get("DesiredCanaries")) and not dstate.get("Promoted")
        resched_now = self._drop_excess_reschedules(
            group_name, count, untainted, resched_now, canaries, canarying
        )
        untainted = self._compute_stop(
            group_name, count, name_index, untainted, lost, canaries, canarying
        )
        ignore, inplace, destructive = self._compute_updates(group_name, untainted)
        upd["Ignore"] += len(ignore)
        upd["InPlaceUpdate"] += len(inplace)
        self.result.inplace_update.extend(a["ID"] for a in inplace)
        if not existing_deployment:
            dstate["DesiredTotal"] += len(destructive) + len(inplace)
        if canarying:
            canary_ids = {a["ID"] for a in canaries}
            untainted = [a for a in untainted if a["ID"] not in canary_ids]
        want_canaries = (
            update is not None
            and bool(destructive)
            and len(canaries) < int(update.get("Canary") or 0)
            and not dstate.get("Promoted")
        )
        if want_canaries:
            assert update is not None
            dstate["DesiredCanaries"] = int(update["Canary"])
            if not self.paused and not self.failed:
                n = int(update["Canary"]) - len(canaries)
                upd["Canary"] += n
                for name in name_index.next_canaries(n, canaries, destructive):
                    self.result.place.append(PlaceResult(name, group_name, canary=True))
        canarying = bool(dstate.get("DesiredCanaries")) and not dstate.get("Promoted")
        limit = self._under_provisioned_by(
            count, update, strategy_empty, untainted, destructive, canarying
        )
        place = self._placements(group_name, count, name_index, untainted, resched_now, lost)
        if not existing_deployment:
            dstate["DesiredTotal"] += len(place)
        place_ready = not self.paused and not self.failed and not canarying
        placed = self._place(group_name, place_ready, place, resched_now, lost)
        limit -= min(len(placed), limit) if place_ready else 0
        if place_ready:
            n = min(len(destructive), limit)
            upd["DestructiveUpdate"] += n
            upd["Ignore"] += len(destructive) - n
            self.result.destructive_update.extend(
                DestructiveResult(a["Name"], group_name, a["ID"])
                for a in ru.ordered(destructive)[:n]
            )
        else:
            upd["Ignore"] += len(destructive)
        self._maybe_create_deployment(
            group_name,
            strategy_empty,
            existing_deployment,
            dstate,
            all_allocs,
            destructive,
            inplace,
        )
        group_places = [p for p in self.result.place if p.group == group_name and not p.canary]
        done = not (
            destructive or inplace or group_places or resched_now or resched_later or want_canaries
        )
        if not done or self.deployment is None:
            return False
        state = self.deployment["TaskGroups"].get(group_name)
        if state is not None:
            desired = max(state.get("DesiredTotal", 0), state.get("DesiredCanaries", 0))
            if state.get("HealthyAllocs", 0) < desired or (
                state.get("DesiredCanaries") and not state.get("Promoted")
            ):
                return False
        return True

    def _drop_excess_reschedules(
        self,
        group: str,
        count: int,
        untainted: list[Alloc],
        resched_now: list[Alloc],
        canaries: list[Alloc],
        canarying: bool,
    ) -> list[Alloc]:
        kept, stops = drop_excess_reschedules(count, untainted, resched_now, canaries, canarying)
        self.result.stop.extend(stops)
        self._updates(group)["Stop"] += len(stops)
        return kept

    def _compute_stop(
        self,
        group: str,
        count: int,
        name_index: ru.AllocNameIndex,
        untainted: list[Alloc],
        lost: list[Alloc],
        canaries: list[Alloc],
        canarying: bool,
    ) -> list[Alloc]:
        stops, remaining = compute_stop(count, name_index, untainted, lost, canaries, canarying)
        self.result.stop.extend(stops)
        self._updates(group)["Stop"] += len(stops)
        return remaining

    def _compute_updates(
        self, group: str, untainted: list[Alloc]
    ) -> tuple[list[Alloc], list[Alloc], list[Alloc]]:
        """Split into (ignore, in-place, destructive) against the current job version."""
        job = self.job
        assert job is not None
        ignore: list[Alloc] = []
        inplace: list[Alloc] = []
        destructive: list[Alloc] = []
        for alloc in ru.ordered(untainted):
            old_job = ru.alloc_job(alloc, job)
            if old_job.get("JobModifyIndex") == job.get("JobModifyIndex"):
                ignore.append(alloc)
            elif tasks_updated(job, old_job, group):
                destructive.append(alloc)
            elif alloc_terminal(alloc):
                ignore.append(alloc)
            else:
                inplace.append(alloc)
        return ignore, inplace, destructive

    def _under_provisioned_by(
        self,
        count: int,
        update: dict[str, Any] | None,
        strategy_empty: bool,
        untainted: list[Alloc],
        destructive: list[Alloc],
        canarying: bool,
    ) -> int:
        """Replacements this evaluation may start: MaxParallel minus allocs not yet healthy."""
        if strategy_empty or not destructive:
            return count
        assert update is not None
        max_parallel = int(update["MaxParallel"])
        if self.deployment is None:
            return max_parallel
        if self.paused or self.failed or canarying:
            return 0
        limit = max_parallel
        for alloc in untainted:
            if alloc.get("DeploymentID") != self.deployment["ID"]:
                continue
            if ru.is_unhealthy(alloc):
                return 0
            if not ru.is_healthy(alloc):
                limit -= 1
        return max(limit, 0)

    def _placements(
        self,
        group: str,
        count: int,
        name_index: ru.AllocNameIndex,
        untainted: list[Alloc],
        resched_now: list[Alloc],
        lost: list[Alloc],
    ) -> list[PlaceResult]:
        job = self.job
        assert job is not None
        place = [
            PlaceResult(
                a["Name"],
                group,
                canary=ru.is_canary(a),
                previous_alloc_id=a["ID"],
                reschedule=True,
                reschedule_tracker=ru.new_reschedule_tracker(a, job, self.now_ns),
            )
            for a in ru.ordered(resched_now)
        ]
        existing = len(untainted) + len(resched_now)
        for alloc in ru.ordered(lost):
            if existing >= count:
                break
            existing += 1
            place.append(
                PlaceResult(
                    alloc["Name"],
                    group,
                    canary=ru.is_canary(alloc),
                    previous_alloc_id=alloc["ID"],
                    lost=True,
                )
            )
        if existing < count:
            place.extend(PlaceResult(name, group) for name in name_index.next(count - existing))
        return place

    def _place(
        self,
        group: str,
        ready: bool,
        place: list[PlaceResult],
        resched_now: list[Alloc],
        lost: list[Alloc],
    ) -> list[PlaceResult]:
        """Apply placements: all when the deployment allows, else only lost/failed replacements."""
        upd = self._updates(group)
        if ready:
            placed = place
            stops = [StopResult(a["ID"], ALLOC_RESCHEDULED) for a in ru.ordered(resched_now)]
        else:
            # Nomad slices place[:len(lost)] here, which can double a reschedule that sorts
            # first; taking the lost replacements by flag keeps each placement once.
            placed = [p for p in place if p.lost][: len(lost)]
            stops = []
            by_id = {a["ID"]: a for a in resched_now}
            for p in place:
                prev = by_id.get(p.previous_alloc_id)
                if prev is None or not p.reschedule:
                    continue
                part_of_failed = (
                    self.failed
                    and self.deployment is not None
                    and prev.get("DeploymentID") == self.deployment["ID"]
                )
                if not part_of_failed:
                    placed.append(p)
                    stops.append(StopResult(prev["ID"], ALLOC_RESCHEDULED))
        upd["Place"] += len(placed)
        upd["Stop"] += len(stops)
        self.result.place.extend(placed)
        self.result.stop.extend(stops)
        return placed

    def _maybe_create_deployment(
        self,
        group: str,
        strategy_empty: bool,
        existing: bool,
        dstate: dict[str, Any],
        all_allocs: list[Alloc],
        destructive: list[Alloc],
        inplace: list[Alloc],
    ) -> None:
        job = self.job
        assert job is not None
        if existing or strategy_empty or dstate["DesiredTotal"] == 0:
            return
        updating_spec = bool(destructive or inplace)
        had_running = any(
            ru.alloc_job(a, job).get("Version") == job.get("Version")
            and ru.alloc_job(a, job).get("CreateIndex") == job.get("CreateIndex")
            for a in all_allocs
        )
        if had_running and not updating_spec:
            return
        if self.deployment is None:
            self.deployment = new_deployment(
                deployment_id=self.new_deployment_id,
                job=job,
                eval_priority=self.eval_priority,
                now_ns=self.now_ns,
            )
            self.result.deployment = self.deployment
        self.deployment["TaskGroups"][group] = dstate


def _is_lost(alloc: Alloc) -> bool:
    return alloc.get("ClientStatus") == ALLOC_CLIENT_LOST and not server_terminal(alloc)


def _older(alloc: Alloc, job: Job) -> bool:
    old = alloc.get("Job") or job
    return bool(
        old.get("Version", 0) < job.get("Version", 0)
        or old.get("CreateIndex", 0) < job.get("CreateIndex", 0)
    )


def _stop_all(allocs: list[Alloc]) -> list[StopResult]:
    return [
        StopResult(a["ID"], ALLOC_LOST, ALLOC_CLIENT_LOST)
        if _is_lost(a)
        else StopResult(a["ID"], ALLOC_NOT_NEEDED)
        for a in ru.ordered(allocs)
    ]
