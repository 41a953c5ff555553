"""Job defaults, spec comparison and dispatch children.

Mirrors api/jobs.go + api/tasks.go Canonicalize, and Job helpers of nomad/structs.

`canonicalize` is `api.Job.Canonicalize()` plus the two server defaults (`Datacenters`,
`NodePool`): every field a client reads exists afterwards, with Nomad's zero value (`null`
for nil maps/slices, `[]` only where Nomad creates one). `server_fields` adds the fields
only the server owns; the state store fills them on register. Input keys must already be
PascalCase (the HTTP layer matches request keys case-insensitively before calling here).
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from nomadpaas.agent.structs.duration import NS_PER_HOUR, NS_PER_MIN, NS_PER_S
from nomadpaas.agent.structs.task import (
    canonicalize_network,
    canonicalize_service,
    canonicalize_task,
    fill_defaults,
    merge_non_null,
)

Job = dict[str, Any]

JOB_TYPE_SERVICE = "service"
JOB_TYPE_BATCH = "batch"
JOB_TYPE_SYSTEM = "system"
JOB_TYPE_SYSBATCH = "sysbatch"
JOB_TYPES = (JOB_TYPE_SERVICE, JOB_TYPE_BATCH, JOB_TYPE_SYSTEM, JOB_TYPE_SYSBATCH)

JOB_STATUS_PENDING = "pending"
JOB_STATUS_RUNNING = "running"
JOB_STATUS_DEAD = "dead"

JOB_DEFAULT_PRIORITY = 50
JOB_MIN_PRIORITY = 1
JOB_MAX_PRIORITY = 100  # server config job_max_priority default

DISPATCH_PAYLOAD_OPTIONAL = "optional"
DISPATCH_PAYLOAD_REQUIRED = "required"
DISPATCH_PAYLOAD_FORBIDDEN = "forbidden"
DISPATCH_LAUNCH_SUFFIX = "/dispatch-"

# api.DefaultUpdateStrategy; Stagger equals MinHealthyTime's old default of 30s.
DEFAULT_UPDATE: dict[str, Any] = {
    "Stagger": 30 * NS_PER_S,
    "MaxParallel": 1,
    "HealthCheck": "checks",
    "MinHealthyTime": 10 * NS_PER_S,
    "HealthyDeadline": 5 * NS_PER_MIN,
    "ProgressDeadline": 10 * NS_PER_MIN,
    "AutoRevert": False,
    "AutoPromote": False,
    "Canary": 0,
}
DEFAULT_MIGRATE: dict[str, Any] = {
    "MaxParallel": 1,
    "HealthCheck": "checks",
    "MinHealthyTime": 10 * NS_PER_S,
    "HealthyDeadline": 5 * NS_PER_MIN,
}
_RESTART_SERVICE: dict[str, Any] = {
    "Attempts": 2,
    "Interval": 30 * NS_PER_MIN,
    "Delay": 15 * NS_PER_S,
    "Mode": "fail",
    "RenderTemplates": False,
}
_RESTART_BATCH: dict[str, Any] = {
    "Attempts": 3,
    "Interval": 24 * NS_PER_HOUR,
    "Delay": 15 * NS_PER_S,
    "Mode": "fail",
    "RenderTemplates": False,
}
_RESCHEDULE_SERVICE: dict[str, Any] = {
    "Attempts": 0,
    "Interval": 0,
    "Delay": 30 * NS_PER_S,
    "DelayFunction": "exponential",
    "MaxDelay": 1 * NS_PER_HOUR,
    "Unlimited": True,
}
_RESCHEDULE_BATCH: dict[str, Any] = {
    "Attempts": 1,
    "Interval": 24 * NS_PER_HOUR,
    "Delay": 5 * NS_PER_S,
    "DelayFunction": "constant",
    "MaxDelay": 0,
    "Unlimited": False,
}

DEFAULT_EPHEMERAL_DISK_MB = 300

# Fields the server owns: never part of "did the spec change", set by the state store.
SERVER_ONLY_FIELDS = (
    "Stop",
    "ParentID",
    "Dispatched",
    "DispatchIdempotencyToken",
    "Status",
    "StatusDescription",
    "Stable",
    "Version",
    "SubmitTime",
    "CreateIndex",
    "ModifyIndex",
    "JobModifyIndex",
    "VersionTag",
    "NomadTokenID",
)


def default_restart_policy(job_type: str) -> dict[str, Any]:
    """The group restart policy a job type starts from (service/system vs batch)."""
    base = _RESTART_SERVICE if job_type in (JOB_TYPE_SERVICE, JOB_TYPE_SYSTEM) else _RESTART_BATCH
    return dict(base)


def default_reschedule_policy(job_type: str) -> dict[str, Any] | None:
    """The reschedule policy of a job type; system and sysbatch have none."""
    if job_type == JOB_TYPE_SERVICE:
        return dict(_RESCHEDULE_SERVICE)
    if job_type == JOB_TYPE_BATCH:
        return dict(_RESCHEDULE_BATCH)
    return None


def canonicalize(job: Job) -> Job:
    """Return a copy of `job` with every api.Job.Canonicalize default (and the server's) applied."""
    j = copy.deepcopy(job)
    job_id = j.get("ID") or ""
    fill_defaults(
        j,
        {
            "ID": job_id,
            "Name": job_id,
            "Type": JOB_TYPE_SERVICE,
            "Namespace": "default",
            "Region": "global",
            "Datacenters": ["*"],
            "NodePool": "default",
            "Priority": JOB_DEFAULT_PRIORITY,
            "AllAtOnce": False,
            "ConsulNamespace": "",
            "Meta": None,
            "Constraints": None,
            "Affinities": None,
            "Spreads": None,
            "Periodic": None,
            "ParameterizedJob": None,
            "Multiregion": None,
            "Reschedule": None,
            "Migrate": None,
            "Payload": None,
            "UI": None,
            "TaskGroups": None,
        },
    )
    if not j["Datacenters"]:
        j["Datacenters"] = ["*"]
    if not j["NodePool"]:
        j["NodePool"] = "default"
    if j.get("Stop") is None:
        j["Stop"] = False
    job_type = str(j["Type"])
    if j.get("Update") is not None:
        j["Update"] = fill_defaults(dict(j["Update"]), DEFAULT_UPDATE)
    elif job_type in (JOB_TYPE_SERVICE, JOB_TYPE_SYSTEM):
        j["Update"] = dict(DEFAULT_UPDATE)
    else:
        j["Update"] = None
    if j["ParameterizedJob"] is not None:
        p = dict(j["ParameterizedJob"])
        fill_defaults(
            p, {"Payload": DISPATCH_PAYLOAD_OPTIONAL, "MetaRequired": None, "MetaOptional": None}
        )
        j["ParameterizedJob"] = p
    if j["Periodic"] is not None:
        fill_defaults(
            j["Periodic"],
            {
                "Enabled": True,
                "Spec": "",
                "Specs": None,
                "SpecType": "cron",
                "ProhibitOverlap": False,
                "TimeZone": "UTC",
            },
        )
    j["TaskGroups"] = [_canonicalize_group(dict(g), j) for g in (j["TaskGroups"] or [])] or None
    if job.get("TaskGroups") == []:
        j["TaskGroups"] = []
    return j


def _update_is_empty(update: dict[str, Any] | None) -> bool:
    """UpdateStrategy.IsEmpty: nil or MaxParallel 0 means 'no deployments'."""
    return update is None or not update.get("MaxParallel")


def _canonicalize_group(g: dict[str, Any], job: Job) -> dict[str, Any]:
    job_type = str(job["Type"])
    scaling = g.get("Scaling")
    if g.get("Count") is None:
        g["Count"] = int(scaling["Min"]) if scaling and scaling.get("Min") is not None else 1
    fill_defaults(
        g,
        {
            "Name": "",
            "Constraints": None,
            "Affinities": None,
            "Spreads": None,
            "Networks": None,
            "Services": None,
            "Volumes": None,
            "Meta": None,
            "Scaling": None,
            "ShutdownDelay": None,
            "StopAfterClientDisconnect": None,
            "MaxClientDisconnect": None,
            "MaxRunDuration": None,
            "Disconnect": None,
            "PreventRescheduleOnLost": False,
            "Consul": None,
        },
    )
    g["EphemeralDisk"] = fill_defaults(
        dict(g.get("EphemeralDisk") or {}),
        {"Sticky": False, "Migrate": False, "SizeMB": DEFAULT_EPHEMERAL_DISK_MB},
    )
    job_update, group_update = job.get("Update"), g.get("Update")
    if job_update is not None and group_update is not None:
        g["Update"] = merge_non_null(job_update, group_update)
    elif job_update is not None and not _update_is_empty(job_update):
        g["Update"] = dict(job_update)
    if g.get("Update") is not None:
        g["Update"] = fill_defaults(dict(g["Update"]), DEFAULT_UPDATE)
    else:
        g["Update"] = None
    reschedule = default_reschedule_policy(job_type)
    if job.get("Reschedule") is not None or g.get("ReschedulePolicy") is not None:
        base = reschedule if reschedule is not None else {}
        reschedule = merge_non_null(
            merge_non_null(base, job.get("Reschedule")), g.get("ReschedulePolicy")
        )
    g["ReschedulePolicy"] = reschedule
    migrate = g.get("Migrate")
    if job.get("Migrate") is not None or migrate is not None:
        migrate = merge_non_null(job.get("Migrate"), migrate)
    if migrate is None and job_type == JOB_TYPE_SERVICE:
        migrate = {}
    g["Migrate"] = fill_defaults(migrate, DEFAULT_MIGRATE) if migrate is not None else None
    g["RestartPolicy"] = merge_non_null(default_restart_policy(job_type), g.get("RestartPolicy"))
    g["Networks"] = (
        [canonicalize_network(dict(n)) for n in g["Networks"]] if g["Networks"] else g["Networks"]
    )
    g["Tasks"] = [canonicalize_task(dict(t), g, job) for t in (g.get("Tasks") or [])] or None
    if g["Services"]:
        g["Services"] = [canonicalize_service(dict(s), None, g, job) for s in g["Services"]]
    return g


def server_fields(job: Job, *, now_ns: int, index: int, version: int) -> Job:
    """Return `job` with the server-owned fields set for a register at raft `index`."""
    j = copy.deepcopy(job)
    fill_defaults(
        j,
        {
            "Stop": False,
            "ParentID": "",
            "Dispatched": False,
            "DispatchIdempotencyToken": "",
            "Status": JOB_STATUS_PENDING,
            "StatusDescription": "",
            "Stable": False,
            "VersionTag": None,
            "NomadTokenID": "",
        },
    )
    j["Version"] = version
    j["SubmitTime"] = now_ns
    j["JobModifyIndex"] = index
    j["ModifyIndex"] = index
    if not j.get("CreateIndex"):
        j["CreateIndex"] = index
    return j


# Job.SpecChanged overwrites exactly these before its deep-equal.
_SPEC_IGNORED = (
    "Status",
    "StatusDescription",
    "Stable",
    "Version",
    "CreateIndex",
    "ModifyIndex",
    "JobModifyIndex",
    "SubmitTime",
)
# Other server-owned fields still count (so a Stop flip is a change, §1.3), but a request
# that simply lacks them must compare equal to the stored zero value.
_SERVER_ZERO: dict[str, Any] = {
    "Stop": False,
    "ParentID": "",
    "Dispatched": False,
    "DispatchIdempotencyToken": "",
    "VersionTag": None,
    "NomadTokenID": "",
}


def _spec(job: Job) -> str:
    body = {k: v for k, v in job.items() if k not in _SPEC_IGNORED}
    for key, zero in _SERVER_ZERO.items():
        if body.get(key) is None:
            body[key] = zero
    return json.dumps(body, sort_keys=True, default=str)


def job_spec_changed(old: Job, new: Job) -> bool:
    """True if `new` needs a new version: Job.SpecChanged, ignoring indexes/version/status."""
    return _spec(old) != _spec(new)


def lookup_group(job: Job, name: str) -> dict[str, Any] | None:
    """The task group called `name`, or None."""
    for group in job.get("TaskGroups") or []:
        if group.get("Name") == name:
            return dict(group)
    return None


def combined_task_meta(job: Job, group_name: str, task_name: str) -> dict[str, str]:
    """Job meta overlaid by group then task meta (Job.CombinedTaskMeta)."""
    group = lookup_group(job, group_name) or {}
    tasks: list[dict[str, Any]] = group.get("Tasks") or []
    task = next((t for t in tasks if t.get("Name") == task_name), {})
    return {**(job.get("Meta") or {}), **(group.get("Meta") or {}), **(task.get("Meta") or {})}


def _eq(a: Any, b: Any) -> bool:
    """Deep equality treating null and empty collections alike, as Nomad's Equal helpers do."""
    return json.dumps(a or None, sort_keys=True) == json.dumps(b or None, sort_keys=True)


def _ports(networks: Any) -> Any:
    return [
        {k: n.get(k) for k in ("Mode", "ReservedPorts", "DynamicPorts", "DNS", "Hostname")}
        for n in networks or []
    ]


_DESTRUCTIVE_TASK_FIELDS = (
    "Driver",
    "User",
    "Config",
    "Env",
    "Artifacts",
    "Vault",
    "Templates",
    "VolumeMounts",
    "Identity",
    "Identities",
    "Consul",
)
_DESTRUCTIVE_RESOURCES = ("CPU", "Cores", "MemoryMB", "MemoryMaxMB", "Devices", "NUMA", "Networks")


def tasks_updated(job_a: Job, job_b: Job, group_name: str) -> bool:
    """True when `group_name` must be replaced, not updated in place (util.go tasksUpdated)."""
    a = lookup_group(job_a, group_name) or {}
    b = lookup_group(job_b, group_name) or {}
    tasks_a, tasks_b = a.get("Tasks") or [], b.get("Tasks") or []
    if len(tasks_a) != len(tasks_b):
        return True
    if not _eq(a.get("EphemeralDisk"), b.get("EphemeralDisk")):
        return True
    if not _eq(_ports(a.get("Networks")), _ports(b.get("Networks"))):
        return True
    if not _eq(a.get("Volumes"), b.get("Volumes")) or not _eq(a.get("Consul"), b.get("Consul")):
        return True
    if _render_templates(a) != _render_templates(b):
        return True
    by_name = {t.get("Name"): t for t in tasks_b}
    for ta in tasks_a:
        tb = by_name.get(ta.get("Name"))
        if tb is None:
            return True
        if any(not _eq(ta.get(f), tb.get(f)) for f in _DESTRUCTIVE_TASK_FIELDS):
            return True
        if combined_task_meta(job_a, group_name, ta["Name"]) != combined_task_meta(
            job_b, group_name, tb["Name"]
        ):
            return True
        ra, rb = ta.get("Resources") or {}, tb.get("Resources") or {}
        if any(not _eq(ra.get(f), rb.get(f)) for f in _DESTRUCTIVE_RESOURCES):
            return True
        if bool((ta.get("LogConfig") or {}).get("Disabled")) != bool(
            (tb.get("LogConfig") or {}).get("Disabled")
        ):
            return True
        if _render_templates(ta) != _render_templates(tb):
            return True
    return False


def _render_templates(obj: dict[str, Any]) -> bool:
    return bool((obj.get("RestartPolicy") or {}).get("RenderTemplates"))


def dispatched_job(
    parent: Job,
    payload: bytes | None,
    meta: dict[str, str] | None,
    *,
    now_ns: int,
    suffix_hex: str,
    id_prefix_template: str = "",
    priority: int | None = None,
    idempotency_token: str = "",
) -> Job:
    """The child job a dispatch creates (job_endpoint.go Dispatch); `suffix_hex` = uuid[:8]."""
    unix_s = now_ns // NS_PER_S
    prefix = f"{id_prefix_template}-" if id_prefix_template else ""
    child = copy.deepcopy(parent)
    child["ID"] = f"{parent['ID']}{DISPATCH_LAUNCH_SUFFIX}{prefix}{unix_s}-{suffix_hex}"
    child["Name"] = child["ID"]
    child["ParentID"] = parent["ID"]
    child["Dispatched"] = True
    child["Status"] = ""
    child["StatusDescription"] = ""
    child["DispatchIdempotencyToken"] = idempotency_token
    child["SubmitTime"] = now_ns
    child["Priority"] = priority if priority else parent.get("Priority", JOB_DEFAULT_PRIORITY)
    if meta:
        child["Meta"] = {**(parent.get("Meta") or {}), **meta}
    # []byte is base64 on the wire; the state store keeps it in that form.
    child["Payload"] = base64.b64encode(payload).decode("ascii") if payload else None
    return child
