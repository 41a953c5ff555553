"""Applies an event and/or a state change to a TaskState; mirrors TaskRunner.appendEvent,
appendTaskEvent and updateStateImpl in client/allocrunner/taskrunner/task_runner.go.

Pure: the clock is passed in. Rules: keep the last MAX_TASK_EVENTS events; `Restarting`
bumps Restarts and LastRestart; an event with FailsTask sets Failed; StartedAt is set on
every move into `running`; FinishedAt once, on the first move into `dead`.
"""

from __future__ import annotations

from typing import Any

from nomadpaas.agent.structs.alloc import (
    TASK_RESTARTING,
    TASK_STATE_DEAD,
    TASK_STATE_RUNNING,
    ZERO_TIME,
    ns_to_rfc3339,
)

MAX_TASK_EVENTS = 10  # Nomad keeps the last 10 events per task (defaultMaxEvents)


def copy_state(ts: dict[str, Any]) -> dict[str, Any]:
    """A copy of a TaskState that later updates cannot change: `apply_task_update` replaces
    the `Events` list and never mutates an event, so the list is copied and the events
    (never changed after they were made) are shared. Far cheaper than a deep copy."""
    copied = dict(ts)
    events = ts.get("Events")
    if events is not None:
        copied["Events"] = list(events)
    return copied


def apply_task_update(
    ts: dict[str, Any], state: str | None, event: dict[str, Any] | None, now_ns: int
) -> None:
    """Change `ts` (a TaskState) in place."""
    if event is not None:
        events = list(ts.get("Events") or [])
        events.append(event)
        ts["Events"] = events[-MAX_TASK_EVENTS:]
        if event["Type"] == TASK_RESTARTING:
            ts["Restarts"] = int(ts.get("Restarts") or 0) + 1
            ts["LastRestart"] = ns_to_rfc3339(int(event["Time"]))
        if event.get("FailsTask"):
            ts["Failed"] = True
    if state is not None:
        old = ts["State"]
        ts["State"] = state
        if state == TASK_STATE_RUNNING and old != TASK_STATE_RUNNING:
            ts["StartedAt"] = ns_to_rfc3339(now_ns)
        if state == TASK_STATE_DEAD and ts.get("FinishedAt", ZERO_TIME) == ZERO_TIME:
            ts["FinishedAt"] = ns_to_rfc3339(now_ns)
