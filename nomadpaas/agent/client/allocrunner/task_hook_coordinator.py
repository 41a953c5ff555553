"""Decides which tasks may start and when the allocation must kill its tasks; mirrors
client/allocrunner/task_hook_coordinator.go and alloc_runner.go's handleTaskStateUpdates.

Pure: task views in, decisions out. Order of a group (nomad-api.md §3, `lifecycle`):

    prestart tasks ─▶ main tasks (once ephemeral prestart tasks completed and prestart
    sidecars run) ─▶ poststart tasks (once every main task started) ─▶ poststop tasks
    (once every main task is dead)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nomadpaas.agent.structs.alloc import (
    TASK_LEADER_DEAD,
    TASK_MAIN_DEAD,
    TASK_SIBLING_FAILED,
    TASK_STATE_DEAD,
    TASK_STATE_RUNNING,
    ZERO_TIME,
)

PRESTART = "prestart"
POSTSTART = "poststart"
POSTSTOP = "poststop"
MAIN = "main"


@dataclass(frozen=True)
class TaskView:
    name: str
    kind: str  # prestart | main | poststart | poststop
    sidecar: bool
    leader: bool
    state: dict[str, Any]  # the TaskState

    @property
    def dead(self) -> bool:
        return bool(self.state["State"] == TASK_STATE_DEAD)

    @property
    def failed(self) -> bool:
        return self.dead and bool(self.state.get("Failed"))

    @property
    def started(self) -> bool:
        return bool(self.state.get("StartedAt", ZERO_TIME) != ZERO_TIME)


def startable(tasks: list[TaskView]) -> set[str]:
    """Names of the tasks whose lifecycle stage has been reached."""
    prestart = [t for t in tasks if t.kind == PRESTART]
    main = [t for t in tasks if t.kind == MAIN]
    out = {t.name for t in prestart}
    prestart_ready = all(
        (t.state["State"] == TASK_STATE_RUNNING or t.started) if t.sidecar
        else (t.dead and not t.failed)
        for t in prestart
    )  # fmt: skip
    if prestart_ready:
        out |= {t.name for t in main}
        if main and all(t.started for t in main):
            out |= {t.name for t in tasks if t.kind == POSTSTART}
    if all(t.dead for t in main) and (main or prestart_ready):
        out |= {t.name for t in tasks if t.kind == POSTSTOP}
    return out


def kill_event_type(tasks: list[TaskView]) -> tuple[str, str] | None:
    """(event type, failed sibling) when the allocation must kill its live tasks:
    a failed task, a dead leader, or only sidecars left alive."""
    live = [t for t in tasks if not t.dead and t.kind != POSTSTOP]
    if not live:
        return None
    for t in tasks:
        if t.failed:
            return TASK_SIBLING_FAILED, t.name
    for t in tasks:
        if t.dead and t.leader:
            return TASK_LEADER_DEAD, ""
    main = [t for t in tasks if t.kind == MAIN]
    if main and all(t.dead for t in main) and all(t.sidecar for t in live):
        return TASK_MAIN_DEAD, ""
    return None
