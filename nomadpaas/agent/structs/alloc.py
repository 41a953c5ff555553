"""Allocations, task states and task events as Nomad emits them; mirrors nomad/structs/alloc.go.

Times: `CreateTime`/`ModifyTime`/`TaskEvent.Time` are int Unix ns; `TaskState.StartedAt`,
`FinishedAt`, `LastRestart` and `DeploymentStatus.Timestamp` are RFC3339Nano strings with
Go's zero time `0001-01-01T00:00:00Z` when unset.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from nomadpaas.agent.structs.duration import NS_PER_S, format_duration

Alloc = dict[str, Any]

ZERO_TIME = "0001-01-01T00:00:00Z"

ALLOC_DESIRED_RUN = "run"
ALLOC_DESIRED_STOP = "stop"
ALLOC_DESIRED_EVICT = "evict"

ALLOC_CLIENT_PENDING = "pending"
ALLOC_CLIENT_RUNNING = "running"
ALLOC_CLIENT_COMPLETE = "complete"
ALLOC_CLIENT_FAILED = "failed"
ALLOC_CLIENT_LOST = "lost"
ALLOC_CLIENT_UNKNOWN = "unknown"
CLIENT_TERMINAL_STATUSES = (ALLOC_CLIENT_COMPLETE, ALLOC_CLIENT_FAILED, ALLOC_CLIENT_LOST)

# DesiredDescription strings (scheduler/structs/const.go).
ALLOC_NOT_NEEDED = "alloc not needed due to job update"
ALLOC_MIGRATING = "alloc is being migrated"
ALLOC_UPDATING = "alloc is being updated due to job update"
ALLOC_LOST = "alloc is lost since its node is down"
ALLOC_IN_PLACE = "alloc updating in-place"
ALLOC_RESCHEDULED = "alloc was rescheduled because it failed"

TASK_STATE_PENDING = "pending"
TASK_STATE_RUNNING = "running"
TASK_STATE_DEAD = "dead"

# TaskEvent.Type values.
TASK_RECEIVED = "Received"
TASK_SETUP = "Task Setup"
TASK_DOWNLOADING_ARTIFACTS = "Downloading Artifacts"
TASK_ARTIFACT_DOWNLOAD_FAILED = "Failed Artifact Download"
TASK_STARTED = "Started"
TASK_TERMINATED = "Terminated"
TASK_RESTARTING = "Restarting"
TASK_NOT_RESTARTING = "Not Restarting"
TASK_KILLING = "Killing"
TASK_KILLED = "Killed"
TASK_DRIVER_FAILURE = "Driver Failure"
TASK_SETUP_FAILURE = "Setup Failure"
TASK_FAILED_VALIDATION = "Failed Validation"
TASK_SIBLING_FAILED = "Sibling Task Failed"
TASK_LEADER_DEAD = "Leader Task Dead"
TASK_MAIN_DEAD = "Main Tasks Dead"
TASK_RESTART_SIGNAL = "Restart Signaled"
TASK_SIGNALING = "Signaling"
TASK_WAITING_SHUTDOWN_DELAY = "Waiting for shutdown delay"
TASK_SKIPPING_SHUTDOWN_DELAY = "Skipping shutdown delay"
TASK_HOOK_FAILED = "Task hook failed"
TASK_HOOK_MESSAGE = "Task hook message"
TASK_ALLOC_UNHEALTHY = "Alloc Unhealthy"

RESTART_REASON_WITHIN_POLICY = "Restart within policy"

_EVENT_FIELDS: dict[str, Any] = {
    "Message": "",
    "DisplayMessage": "",
    "Details": None,
    "FailsTask": False,
    "RestartReason": "",
    "SetupError": "",
    "DriverError": "",
    "ExitCode": 0,
    "Signal": 0,
    "KillTimeout": 0,
    "KillError": "",
    "KillReason": "",
    "StartDelay": 0,
    "DownloadError": "",
    "ValidationError": "",
    "DiskLimit": 0,
    "FailedSibling": "",
    "VaultError": "",
    "TaskSignalReason": "",
    "TaskSignal": "",
    "DriverMessage": "",
    "GenericSource": "",
}
# The Details key each typed field is mirrored into (TaskEvent.PopulateEventDisplayMessage/Set*).
_DETAIL_KEYS = {
    "ExitCode": "exit_code",
    "Signal": "signal",
    "RestartReason": "restart_reason",
    "StartDelay": "start_delay",
    "KillTimeout": "kill_timeout",
    "KillReason": "kill_reason",
    "KillError": "kill_error",
    "DownloadError": "download_error",
    "DriverError": "driver_error",
    "SetupError": "setup_error",
    "ValidationError": "validation_error",
    "FailedSibling": "failed_sibling",
    "FailsTask": "fails_task",
    "Message": "message",
    "DriverMessage": "driver_message",
}

_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def ns_to_rfc3339(ns: int) -> str:
    """Unix ns → Go's RFC3339Nano (UTC, trailing zeros trimmed); 0 gives the zero time."""
    if ns == 0:
        return ZERO_TIME
    secs, frac = divmod(ns, NS_PER_S)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac_text = f".{frac:09d}".rstrip("0") if frac else ""
    return f"{base}{frac_text}Z"


def rfc3339_to_ns(text: str | None) -> int:
    """RFC3339(Nano) → Unix ns; the Go zero time (or empty) gives 0."""
    if not text or text.startswith("0001-01-01"):
        return 0
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"not an RFC3339 time: {text!r}")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    secs = int(datetime.fromisoformat(m.group(1) + zone).timestamp())
    return secs * NS_PER_S + int((m.group(2) or "0").ljust(9, "0"))


def alloc_name(job_id: str, group: str, index: int) -> str:
    """`<job>.<group>[<i>]` (structs.AllocName)."""
    return f"{job_id}.{group}[{index}]"


def alloc_index(name: str) -> int:
    """The `i` of `job.group[i]`; -1 if the name has no index."""
    m = re.search(r"\[(\d+)\]$", name)
    return int(m.group(1)) if m else -1


def new_allocation(
    *,
    alloc_id: str,
    eval_id: str,
    job: dict[str, Any],
    group: str,
    name: str,
    node_id: str,
    node_name: str,
    now_ns: int,
    deployment_id: str = "",
    canary: bool = False,
    previous_allocation: str = "",
    reschedule_tracker: dict[str, Any] | None = None,
) -> Alloc:
    """A freshly placed allocation: desired `run`, client `pending`, no task states yet."""
    return {
        "ID": alloc_id,
        "Namespace": job.get("Namespace", "default"),
        "EvalID": eval_id,
        "Name": name,
        "NodeID": node_id,
        "NodeName": node_name,
        "JobID": job["ID"],
        "Job": job,
        "TaskGroup": group,
        "Resources": None,
        "SharedResources": None,
        "TaskResources": None,
        "AllocatedResources": None,
        "Metrics": None,
        "DesiredStatus": ALLOC_DESIRED_RUN,
        "DesiredDescription": "",
        "DesiredTransition": new_desired_transition(),
        "ClientStatus": ALLOC_CLIENT_PENDING,
        "ClientDescription": "",
        "TaskStates": None,
        "AllocStates": None,
        "PreviousAllocation": previous_allocation,
        "NextAllocation": "",
        "DeploymentID": deployment_id,
        "DeploymentStatus": new_alloc_deployment_status(canary=True) if canary else None,
        "RescheduleTracker": reschedule_tracker,
        "NetworkStatus": None,
        "FollowupEvalID": "",
        "PreemptedAllocations": None,
        "PreemptedByAllocation": "",
        "SigningKeyID": "",
        "CreateIndex": 0,
        "ModifyIndex": 0,
        "AllocModifyIndex": 0,
        "CreateTime": now_ns,
        "ModifyTime": now_ns,
    }


def new_desired_transition() -> dict[str, Any]:
    """DesiredTransition with every pointer unset."""
    keys = (
        "Migrate",
        "Reschedule",
        "ForceReschedule",
        "NoShutdownDelay",
        "MigrateDisablePlacement",
    )
    return dict.fromkeys(keys)


def new_alloc_deployment_status(
    *, canary: bool = False, healthy: bool | None = None
) -> dict[str, Any]:
    """AllocDeploymentStatus; Healthy null means 'not yet decided'."""
    return {"Healthy": healthy, "Timestamp": ZERO_TIME, "Canary": canary, "ModifyIndex": 0}


_STUB_FIELDS = (
    "ID",
    "EvalID",
    "Name",
    "Namespace",
    "NodeID",
    "NodeName",
    "JobID",
    "TaskGroup",
    "DesiredStatus",
    "DesiredDescription",
    "ClientStatus",
    "ClientDescription",
    "DesiredTransition",
    "TaskStates",
    "DeploymentStatus",
    "FollowupEvalID",
    "NextAllocation",
    "RescheduleTracker",
    "PreemptedAllocations",
    "PreemptedByAllocation",
    "CreateIndex",
    "ModifyIndex",
    "CreateTime",
    "ModifyTime",
)


def alloc_stub(alloc: Alloc, *, resources: bool = False, task_states: bool = True) -> Alloc:
    """The AllocListStub of an allocation, as list endpoints return it."""
    stub = {k: alloc.get(k) for k in _STUB_FIELDS}
    job = alloc.get("Job") or {}
    stub["JobType"] = job.get("Type", "")
    stub["JobVersion"] = job.get("Version", 0)
    if resources:  # omitempty in Go: only present when asked for
        stub["AllocatedResources"] = alloc.get("AllocatedResources")
    if not task_states:
        stub["TaskStates"] = None
    return stub


def new_task_state() -> dict[str, Any]:
    """A task's state before anything happened."""
    return {
        "State": TASK_STATE_PENDING,
        "Failed": False,
        "Restarts": 0,
        "LastRestart": ZERO_TIME,
        "StartedAt": ZERO_TIME,
        "FinishedAt": ZERO_TIME,
        "Events": None,
        "Paused": "",
    }


def new_task_event(event_type: str, *, now_ns: int, **fields: Any) -> dict[str, Any]:
    """A TaskEvent with its Details map and DisplayMessage filled as Nomad's client does."""
    event: dict[str, Any] = {"Type": event_type, "Time": now_ns, **_EVENT_FIELDS}
    unknown = set(fields) - set(_EVENT_FIELDS)
    if unknown:
        raise TypeError(f"unknown TaskEvent fields: {sorted(unknown)}")
    event.update(fields)
    details: dict[str, str] = {}
    for field, key in _DETAIL_KEYS.items():
        value = fields.get(field)
        if value in (None, "", 0, False) and not (
            field == "ExitCode" and event_type == TASK_TERMINATED
        ):
            continue
        if field == "Message" and event_type == TASK_TERMINATED:
            key = "exit_message"  # TaskEvent.SetExitMessage
        details[key] = str(value).lower() if isinstance(value, bool) else str(value)
    if event_type == TASK_TERMINATED:
        details.setdefault("signal", str(event["Signal"]))
    event["Details"] = details or None
    event["DisplayMessage"] = display_message(event)
    return event


def display_message(event: dict[str, Any]) -> str:
    """TaskEvent.PopulateEventDisplayMessage: the text `nomad alloc status` shows."""
    etype, message = event["Type"], event.get("Message") or ""
    if etype in _FIXED_DISPLAY:
        return _FIXED_DISPLAY[etype]
    if etype in _ERROR_DISPLAY:
        field, fallback = _ERROR_DISPLAY[etype]
        return str(event.get(field) or fallback)
    if etype == TASK_TERMINATED:
        parts = [f"Exit Code: {event['ExitCode']}"]
        if event.get("Signal"):
            parts.append(f"Signal: {event['Signal']}")
        if message:
            parts.append(f'Exit Message: "{message}"')
        return ", ".join(parts)
    if etype == TASK_RESTARTING:
        in_text = f"Task restarting in {format_duration(event.get('StartDelay') or 0)}"
        reason = event.get("RestartReason") or ""
        if reason and reason != RESTART_REASON_WITHIN_POLICY:
            return f"{reason} - {in_text}"
        return in_text
    if etype == TASK_KILLING:
        if event.get("KillReason"):
            return str(event["KillReason"])
        if event.get("KillTimeout"):
            wait = format_duration(event["KillTimeout"])
            return f"Sent interrupt. Waiting {wait} before force killing"
        return "Sent interrupt"
    if etype == TASK_SIBLING_FAILED:
        sibling = event.get("FailedSibling") or ""
        return f'Task\'s sibling "{sibling}" failed' if sibling else "Task's sibling failed"
    return message  # Task Setup and every other type show the Message


_FIXED_DISPLAY = {
    TASK_RECEIVED: "Task received by client",
    TASK_DOWNLOADING_ARTIFACTS: "Client is downloading artifacts",
    TASK_STARTED: "Task started by client",
    TASK_LEADER_DEAD: "Leader Task in Group dead",
    TASK_MAIN_DEAD: "Main tasks in the group died",
}
# Types that show one error field, or a fixed fallback when it is empty.
_ERROR_DISPLAY = {
    TASK_FAILED_VALIDATION: ("ValidationError", "Validation of task failed"),
    TASK_SETUP_FAILURE: ("SetupError", "Task setup failed"),
    TASK_DRIVER_FAILURE: ("DriverError", "Failed to start task"),
    TASK_ARTIFACT_DOWNLOAD_FAILED: ("DownloadError", "Failed to download artifacts"),
    TASK_KILLED: ("KillError", "Task successfully killed"),
    TASK_NOT_RESTARTING: ("RestartReason", "Task exceeded restart policy"),
    TASK_RESTART_SIGNAL: ("RestartReason", "Task signaled to restart"),
}


def client_status_from_task_states(task_states: dict[str, Any] | None) -> tuple[str, str]:
    """(ClientStatus, ClientDescription) from task states: first matching row of §3 wins."""
    states = list((task_states or {}).values())
    if any(s["State"] == TASK_STATE_DEAD and s.get("Failed") for s in states):
        return ALLOC_CLIENT_FAILED, "Failed tasks"
    if any(s["State"] == TASK_STATE_RUNNING for s in states):
        return ALLOC_CLIENT_RUNNING, "Tasks are running"
    if not states or any(s["State"] == TASK_STATE_PENDING for s in states):
        return ALLOC_CLIENT_PENDING, "No tasks have started"
    return ALLOC_CLIENT_COMPLETE, "All tasks have completed"


_SERVER_TERMINAL_STATUSES = (ALLOC_DESIRED_STOP, ALLOC_DESIRED_EVICT)


def server_terminal(alloc: Alloc) -> bool:
    """DesiredStatus is stop or evict."""
    return alloc.get("DesiredStatus") in _SERVER_TERMINAL_STATUSES


def client_terminal(alloc: Alloc) -> bool:
    """ClientStatus is complete, failed or lost."""
    return alloc.get("ClientStatus") in CLIENT_TERMINAL_STATUSES


def alloc_terminal(alloc: Alloc) -> bool:
    """Allocation.TerminalStatus: server- or client-terminal."""
    # Inlined (hot: every alloc of a job or node, on every summary refresh and client poll).
    return (
        alloc.get("DesiredStatus") in _SERVER_TERMINAL_STATUSES
        or alloc.get("ClientStatus") in CLIENT_TERMINAL_STATUSES
    )


def ran_successfully(alloc: Alloc) -> bool:
    """Every task ended dead and not failed (Allocation.RanSuccessfully)."""
    states = list((alloc.get("TaskStates") or {}).values())
    return bool(states) and all(
        s["State"] == TASK_STATE_DEAD and not s.get("Failed") for s in states
    )


def last_event_time_ns(alloc: Alloc) -> int:
    """The failure time used for rescheduling: latest task FinishedAt, else ModifyTime."""
    finished = [
        rfc3339_to_ns(s.get("FinishedAt")) for s in (alloc.get("TaskStates") or {}).values()
    ]
    latest = max(finished, default=0)
    return latest if latest else int(alloc.get("ModifyTime") or 0)
