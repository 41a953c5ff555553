"""The scheduler's contract: the Scheduler, State and Planner protocols, the Plan it
builds, and the name → factory map; mirrors scheduler/scheduler.go and
scheduler/structs/interfaces.go (+ the Plan/PlanResult of nomad/structs).

The scheduler sees the world only through `State` (an immutable view: reads only) and
changes it only through `Planner` (submit a plan, create or update evaluations). It never
imports the state store; the server's worker adapts a snapshot to `State`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

Row = Any  # a frozen Nomad JSON object (Job, Allocation, Deployment, Node)


class State(Protocol):
    """An immutable view of the cluster at `index`."""

    @property
    def index(self) -> int: ...

    def job_by_id(self, namespace: str, job_id: str) -> Row | None: ...

    def allocs_by_job(self, namespace: str, job_id: str) -> list[Row]:
        """Every allocation of the job ID, earlier incarnations included."""
        ...

    def latest_deployment(self, namespace: str, job_id: str) -> Row | None: ...

    def ready_nodes(self) -> list[Row]: ...

    def allocs_by_node(self, node_id: str) -> list[Row]: ...


@dataclass
class Plan:
    """What one evaluation wants written, applied atomically by plan apply.

    - `node_allocation`: full allocations to upsert: new placements (CreateIndex 0) and
      existing ones changed in place (new Job, deployment, FollowupEvalID).
    - `node_update`: allocations to stop: `{"ID", "DesiredDescription", "ClientStatus"}`
      (`ClientStatus` "" leaves it as is; "lost" marks it lost).
    - `deployment`: a deployment to create (or replace whole, e.g. PlacedCanaries).
    - `deployment_updates`: `{"DeploymentID", "Status", "StatusDescription"}`.
    """

    eval_id: str
    priority: int
    job: Row | None
    snapshot_index: int
    node_allocation: list[dict[str, Any]] = field(default_factory=list)
    node_update: list[dict[str, Any]] = field(default_factory=list)
    deployment: dict[str, Any] | None = None
    deployment_updates: list[dict[str, Any]] = field(default_factory=list)

    def is_no_op(self) -> bool:
        return not (
            self.node_allocation or self.node_update or self.deployment or self.deployment_updates
        )


@dataclass
class PlanResult:
    """What plan apply committed. `refresh_index` > 0 means the plan was rejected (it
    conflicted with the state at that index): the scheduler refreshes and retries."""

    alloc_index: int = 0
    refresh_index: int = 0
    node_allocation: list[dict[str, Any]] = field(default_factory=list)
    node_update: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rejected(self) -> bool:
        return self.refresh_index > 0


class Planner(Protocol):
    """How a scheduler changes the world (the worker implements it)."""

    def submit_plan(self, plan: Plan) -> tuple[PlanResult, State | None]:
        """Apply the plan; returns the result and, when it was rejected, a fresher State."""
        ...

    def update_eval(self, evaluation: dict[str, Any]) -> None:
        """Write the evaluation back (complete / failed, QueuedAllocations, ...)."""
        ...

    def create_eval(self, evaluation: dict[str, Any]) -> None:
        """Create a follow-up or blocked evaluation."""
        ...


class Scheduler(Protocol):
    def process(self, evaluation: Row) -> None: ...


SchedulerFactory = Callable[[State, Planner], Scheduler]


def _service(state: State, planner: Planner) -> Scheduler:
    from nomadpaas.agent.scheduler.generic_sched import GenericScheduler

    return GenericScheduler(state, planner, batch=False)


def _batch(state: State, planner: Planner) -> Scheduler:
    from nomadpaas.agent.scheduler.generic_sched import GenericScheduler

    return GenericScheduler(state, planner, batch=True)


BUILTIN_SCHEDULERS: dict[str, SchedulerFactory] = {"service": _service, "batch": _batch}


def new_scheduler(name: str, state: State, planner: Planner) -> Scheduler:
    """The scheduler for an evaluation Type; KeyError for types this agent lacks."""
    try:
        factory = BUILTIN_SCHEDULERS[name]
    except KeyError:
        raise KeyError(f"unknown scheduler '{name}'") from None
    return factory(state, planner)
