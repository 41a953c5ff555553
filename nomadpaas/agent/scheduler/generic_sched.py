"""The generic scheduler for `service` and `batch` jobs: reconcile, check feasibility,
place on the single node, submit the plan, complete the evaluation; mirrors
scheduler/generic_sched.go (+ the single-node parts of feasible.go and rank.go).

One `process(eval)`:
  reconcile(job, allocs, deployment) → stops, in-place updates, destructive updates,
  placements, deployment changes → for each placement: driver check, ports → Plan →
  planner.submit_plan (retried on a fresher State when plan apply rejects it) →
  follow-up evals for delayed reschedules, a `blocked` eval for failed placements →
  planner.update_eval(complete, QueuedAllocations, FailedTGAllocs).
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import time
import uuid
from typing import Any

from nomadpaas.agent.scheduler.ports import PortsExhausted, assign_ports, ports_in_use
from nomadpaas.agent.scheduler.reconciler import PlaceResult, ReconcileResults, reconcile
from nomadpaas.agent.scheduler.resources import set_resources
from nomadpaas.agent.scheduler.scheduler import Plan, Planner, Row, State
from nomadpaas.agent.structs.alloc import (
    ALLOC_RESCHEDULED,
    ALLOC_UPDATING,
    alloc_terminal,
    new_allocation,
    ns_to_rfc3339,
)
from nomadpaas.agent.structs.deployment import deployment_active
from nomadpaas.agent.structs.duration import NS_PER_S
from nomadpaas.agent.structs.evaluation import (
    EVAL_STATUS_BLOCKED,
    EVAL_STATUS_COMPLETE,
    EVAL_STATUS_FAILED,
    TRIGGER_QUEUED_ALLOCS,
    TRIGGER_RETRY_FAILED_ALLOC,
    new_evaluation,
)
from nomadpaas.agent.structs.job import JOB_TYPE_BATCH, lookup_group

log = logging.getLogger(__name__)

MAX_SERVICE_SCHEDULE_ATTEMPTS = 5  # plan submissions per eval before it fails (Nomad: 5)
MAX_BATCH_SCHEDULE_ATTEMPTS = 2  # (Nomad: 2)
FOLLOWUP_BATCH_WINDOW_NS = 5 * NS_PER_S  # delayed reschedules this close share one eval
HOST_IP = "127.0.0.1"  # every port is allocated on loopback: the node is this machine
BLOCKED_EVAL_DESCRIPTION = "created due to placement conflicts"
FILTER_MISSING_DRIVERS = "missing drivers"


def new_metric() -> dict[str, Any]:
    """An empty AllocationMetric."""
    return {
        "NodesEvaluated": 0,
        "NodesFiltered": 0,
        "NodesInPool": 0,
        "NodesAvailable": {},
        "ClassFiltered": None,
        "ConstraintFiltered": None,
        "NodesExhausted": 0,
        "ClassExhausted": None,
        "DimensionExhausted": None,
        "QuotaExhausted": None,
        "ResourcesExhausted": None,
        "Scores": None,
        "ScoreMetaData": None,
        "AllocationTime": 0,
        "CoalescedFailures": 0,
    }


class GenericScheduler:
    """Schedules one evaluation of a service or batch job (see the module docstring)."""

    def __init__(self, state: State, planner: Planner, *, batch: bool) -> None:
        self.state = state
        self.planner = planner
        self.batch = batch
        self.eval: dict[str, Any] = {}
        # Outcomes of the last computation, read by `process` and by the plan endpoint.
        self.desired_tg_updates: dict[str, dict[str, int]] = {}
        self.failed_tg_allocs: dict[str, dict[str, Any]] = {}
        self.queued: dict[str, int] = {}
        self.last_plan: Plan | None = None

    # -- the loop ------------------------------------------------------------------------

    def process(self, evaluation: Row) -> None:
        self.eval = copy.deepcopy(dict(evaluation))
        limit = MAX_BATCH_SCHEDULE_ATTEMPTS if self.batch else MAX_SERVICE_SCHEDULE_ATTEMPTS
        for _ in range(limit):
            if self._compute_and_submit():
                self._finish(EVAL_STATUS_COMPLETE, "")
                return
        self._finish(EVAL_STATUS_FAILED, f"maximum attempts reached ({limit})")

    def _finish(self, status: str, description: str) -> None:
        e = self.eval
        if self.failed_tg_allocs and status == EVAL_STATUS_COMPLETE:
            blocked = self._new_eval(TRIGGER_QUEUED_ALLOCS, status=EVAL_STATUS_BLOCKED)
            blocked["StatusDescription"] = BLOCKED_EVAL_DESCRIPTION
            blocked["ClassEligibility"] = {}
            self.planner.create_eval(blocked)
            e["BlockedEval"] = blocked["ID"]
        e["Status"] = status
        e["StatusDescription"] = description
        e["QueuedAllocations"] = dict(self.queued)
        e["FailedTGAllocs"] = dict(self.failed_tg_allocs) or None
        e["SnapshotIndex"] = self.state.index
        self.planner.update_eval(e)

    def _new_eval(self, trigger: str, *, status: str = "pending", wait_until_ns: int = 0) -> Any:
        job = self.state.job_by_id(self.eval["Namespace"], self.eval["JobID"]) or {
            "ID": self.eval["JobID"],
            "Namespace": self.eval["Namespace"],
            "Type": self.eval["Type"],
        }
        return new_evaluation(
            eval_id=str(uuid.uuid4()),
            job=job,
            triggered_by=trigger,
            now_ns=time.time_ns(),
            priority=self.eval["Priority"],
            eval_type=self.eval["Type"],
            wait_until=ns_to_rfc3339(wait_until_ns),
            previous_eval=self.eval["ID"],
            status=status,
        )

    def _compute_and_submit(self) -> bool:
        """One attempt; False when plan apply rejected the plan (state refreshed)."""
        plan = self.compute_plan()
        if plan.is_no_op():
            return True
        result, fresher = self.planner.submit_plan(plan)
        if result.rejected:
            if fresher is not None:
                self.state = fresher
            return False
        return True

    # -- computing a plan ----------------------------------------------------------------

    def compute_plan(self) -> Plan:
        """Reconcile and turn the decisions into a Plan (no side effects but follow-up evals)."""
        e = self.eval
        job = self.state.job_by_id(e["Namespace"], e["JobID"])
        if job is not None:
            self.batch = job.get("Type") == JOB_TYPE_BATCH
        allocs = self.state.allocs_by_job(e["Namespace"], e["JobID"])
        deployment = self.state.latest_deployment(e["Namespace"], e["JobID"])
        now = time.time_ns()
        results = reconcile(
            copy.deepcopy(job) if job is not None else None,
            [dict(a) for a in allocs],
            copy.deepcopy(deployment) if deployment is not None else None,
            now,
            eval_id=e["ID"],
            eval_priority=int(e["Priority"]),
            new_deployment_id=str(uuid.uuid4()),
        )
        self.desired_tg_updates = results.desired_tg_updates
        self.failed_tg_allocs = {}
        self.queued = {g["Name"]: 0 for g in (job or {}).get("TaskGroups") or []}
        plan = Plan(e["ID"], int(e["Priority"]), job, self.state.index)
        by_id = {a["ID"]: a for a in allocs}
        current = self._current_deployment(job, deployment, results)
        plan.node_update = [
            {"ID": s.alloc_id, "DesiredDescription": s.description, "ClientStatus": s.client_status}
            for s in results.stop
        ]
        plan.node_update.extend(
            {"ID": d.stop_alloc_id, "DesiredDescription": d.description, "ClientStatus": ""}
            for d in results.destructive_update
        )
        if job is not None:
            for alloc_id in results.inplace_update:
                alloc = dict(by_id[alloc_id])
                alloc["Job"] = job
                alloc["DeploymentID"] = current["ID"] if current is not None else ""
                alloc["DeploymentStatus"] = None
                plan.node_allocation.append(alloc)
            places = [
                *results.place,
                *(
                    PlaceResult(d.name, d.group, previous_alloc_id=d.stop_alloc_id)
                    for d in results.destructive_update
                ),
            ]
            self._place(plan, job, places, current, now)
        joined = any(
            a.get("DeploymentID") == (current or {}).get("ID") for a in plan.node_allocation
        )
        if results.deployment is not None and joined:
            # A new deployment nothing could join (every placement failed) is not kept:
            # the job stays `pending` on its blocked eval instead of `running`.
            plan.deployment = results.deployment
        elif current is not None and plan.deployment is None and self._canaries_placed:
            plan.deployment = current
        plan.deployment_updates = [
            {
                "DeploymentID": u.deployment_id,
                "Status": u.status,
                "StatusDescription": u.description,
            }
            for u in results.deployment_updates
        ]
        self._reschedule_later(plan, results, by_id)
        self.last_plan = plan
        return plan

    def _current_deployment(
        self, job: Row | None, deployment: Row | None, results: ReconcileResults
    ) -> dict[str, Any] | None:
        """The deployment new and updated allocs join: the new one, else the job version's."""
        if results.deployment is not None:
            return results.deployment
        if (
            job is not None
            and deployment is not None
            and deployment_active(deployment)
            and deployment.get("JobVersion") == job.get("Version")
            and deployment.get("JobCreateIndex") == job.get("CreateIndex")
        ):
            return copy.deepcopy(dict(deployment))
        return None

    # -- placement -----------------------------------------------------------------------

    def _place(
        self,
        plan: Plan,
        job: Row,
        places: list[PlaceResult],
        deployment: dict[str, Any] | None,
        now: int,
    ) -> None:
        self._canaries_placed = False
        nodes = self.state.ready_nodes()
        node = nodes[0] if nodes else None
        used: set[int] = set()
        # The node's ports in use matter only to groups with networks: a job without any
        # skips the walk over every allocation on the node.
        placing = {p.group for p in places}
        wants_ports = any(
            g.get("Networks") for g in job.get("TaskGroups") or () if g.get("Name") in placing
        )
        if node is not None and wants_ports:
            stopping = {u["ID"] for u in plan.node_update}
            live = [
                a
                for a in self.state.allocs_by_node(node["ID"])
                if not alloc_terminal(a) and a["ID"] not in stopping
            ]
            used = ports_in_use(live)
        # Every placement on the node gets the same metric, and every placement of a group
        # without networks the same resources: built once and shared by the plan's allocs
        # (plan apply freezes a shared object once; 1,000 placements, one copy).
        metric = self._success_metric(node)
        resources: dict[str, dict[str, Any]] = {}
        for place in places:
            group = lookup_group(job, place.group)
            if group is None:
                continue
            failure = self._infeasible(job, group, node)
            networks = ports = None
            if failure is None:
                try:
                    networks, ports = assign_ports(group.get("Networks"), used, HOST_IP)
                except PortsExhausted as exc:
                    failure = self._exhausted(node, str(exc))
            if failure is not None or node is None:
                self._record_failure(plan, place, failure or new_metric())
                continue
            alloc = new_allocation(
                alloc_id=str(uuid.uuid4()),
                eval_id=self.eval["ID"],
                job=job,
                group=place.group,
                name=place.name,
                node_id=node["ID"],
                node_name=node.get("Name", ""),
                now_ns=now,
                deployment_id=deployment["ID"] if deployment is not None else "",
                canary=place.canary,
                previous_allocation=place.previous_alloc_id,
                reschedule_tracker=place.reschedule_tracker,
            )
            if networks is None and ports is None:
                shared = resources.get(place.group)
                if shared is None:
                    shared = resources[place.group] = {}
                    set_resources(shared, group, None, None)
                alloc.update(shared)
            else:
                set_resources(alloc, group, networks, ports)
            alloc["Metrics"] = metric
            plan.node_allocation.append(alloc)
            if place.canary and deployment is not None:
                state = deployment["TaskGroups"].get(place.group)
                if state is not None:
                    state["PlacedCanaries"] = [*(state.get("PlacedCanaries") or []), alloc["ID"]]
                    self._canaries_placed = True

    _canaries_placed = False

    def _infeasible(self, job: Row, group: Row, node: Row | None) -> dict[str, Any] | None:
        """The failure metric when the node cannot run the group at all, else None."""
        metric = new_metric()
        if node is None:
            return metric
        dcs = job.get("Datacenters") or ["*"]
        if not any(fnmatch.fnmatchcase(node.get("Datacenter", ""), dc) for dc in dcs):
            return metric
        metric["NodesInPool"] = 1
        metric["NodesAvailable"] = {node.get("Datacenter", ""): 1}
        metric["NodesEvaluated"] = 1
        drivers = node.get("Drivers") or {}
        for task in group.get("Tasks") or ():
            info = drivers.get(task.get("Driver", ""))
            if info is None or not info.get("Detected") or not info.get("Healthy"):
                metric["NodesFiltered"] = 1
                metric["ConstraintFiltered"] = {FILTER_MISSING_DRIVERS: 1}
                return metric
        return None

    def _exhausted(self, node: Row | None, dimension: str) -> dict[str, Any]:
        metric = self._success_metric(node)
        metric["NodesExhausted"] = 1
        metric["DimensionExhausted"] = {dimension: 1}
        return metric

    def _success_metric(self, node: Row | None) -> dict[str, Any]:
        metric = new_metric()
        if node is not None:
            metric["NodesInPool"] = 1
            metric["NodesEvaluated"] = 1
            metric["NodesAvailable"] = {node.get("Datacenter", ""): 1}
        return metric

    def _record_failure(self, plan: Plan, place: PlaceResult, metric: dict[str, Any]) -> None:
        existing = self.failed_tg_allocs.get(place.group)
        if existing is not None:
            existing["CoalescedFailures"] += 1
        else:
            self.failed_tg_allocs[place.group] = metric
        self.queued[place.group] = self.queued.get(place.group, 0) + 1
        # A replacement that cannot be placed must not stop what it replaces.
        if place.previous_alloc_id:
            plan.node_update = [
                u
                for u in plan.node_update
                if not (
                    u["ID"] == place.previous_alloc_id
                    and u["DesiredDescription"] in (ALLOC_UPDATING, ALLOC_RESCHEDULED)
                )
            ]

    # -- delayed reschedules -------------------------------------------------------------

    def _reschedule_later(
        self, plan: Plan, results: ReconcileResults, by_id: dict[str, Row]
    ) -> None:
        """One follow-up eval per 5 s window of WaitUntil; the allocs point at it."""
        batch_start = 0
        followup: dict[str, Any] | None = None
        planned = {a["ID"]: a for a in plan.node_allocation}
        for alloc_id, when in sorted(results.reschedule_later, key=lambda x: x[1]):
            if followup is None or when - batch_start > FOLLOWUP_BATCH_WINDOW_NS:
                batch_start = when
                followup = self._new_eval(TRIGGER_RETRY_FAILED_ALLOC, wait_until_ns=when)
                self.planner.create_eval(followup)
            alloc = planned.get(alloc_id)
            if alloc is None:
                alloc = dict(by_id[alloc_id])
                plan.node_allocation.append(alloc)
                planned[alloc_id] = alloc
            alloc["FollowupEvalID"] = followup["ID"]
