"""The reconciler's answer: placements, stops, updates, deployment changes.

Mirrors ReconcileResults in scheduler/reconciler/reconcile_cluster.go.

Plain frozen records so the generic scheduler can turn them into a plan, and tests can
compare them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nomadpaas.agent.structs.alloc import ALLOC_UPDATING
from nomadpaas.agent.structs.deployment import Deployment

DESIRED_UPDATE_KEYS = (
    "Ignore",
    "Place",
    "Migrate",
    "Stop",
    "InPlaceUpdate",
    "DestructiveUpdate",
    "Canary",
    "Preemptions",
    "Disconnect",
    "Reconnect",
    "RescheduleNow",
    "RescheduleLater",
)


@dataclass(frozen=True)
class PlaceResult:
    """A new allocation to create; `previous_alloc_id` set for replacements."""

    name: str
    group: str
    canary: bool = False
    previous_alloc_id: str = ""
    reschedule: bool = False
    lost: bool = False
    reschedule_tracker: dict[str, Any] | None = None


@dataclass(frozen=True)
class StopResult:
    """An allocation to mark DesiredStatus stop (ClientStatus set only for lost ones)."""

    alloc_id: str
    description: str
    client_status: str = ""


@dataclass(frozen=True)
class DestructiveResult:
    """Stop `stop_alloc_id` (ALLOC_UPDATING) and place `name` from the new job version."""

    name: str
    group: str
    stop_alloc_id: str
    description: str = ALLOC_UPDATING


@dataclass(frozen=True)
class DeploymentStatusUpdate:
    deployment_id: str
    status: str
    description: str


@dataclass
class ReconcileResults:
    """Everything one evaluation decided (ReconcileResults)."""

    place: list[PlaceResult] = field(default_factory=list)
    stop: list[StopResult] = field(default_factory=list)
    inplace_update: list[str] = field(default_factory=list)  # alloc IDs
    destructive_update: list[DestructiveResult] = field(default_factory=list)
    deployment: Deployment | None = None  # newly created, to be inserted
    deployment_updates: list[DeploymentStatusUpdate] = field(default_factory=list)
    desired_tg_updates: dict[str, dict[str, int]] = field(default_factory=dict)
    reschedule_later: list[tuple[str, int]] = field(
        default_factory=list
    )  # (alloc ID, WaitUntil ns)


def new_desired_updates() -> dict[str, int]:
    """A DesiredUpdates annotation with every counter at 0 (plan's DesiredTGUpdates entry)."""
    return dict.fromkeys(DESIRED_UPDATE_KEYS, 0)
