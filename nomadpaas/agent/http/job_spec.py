"""Decoding job requests: case-insensitive specs of api.Job and the job request bodies,
and the register-time namespace/ID rules; mirrors the decode + `ApiJobToStructJob`
steps of command/agent/job_endpoint.go.

`OpenStruct` is a `Struct` that keeps keys it does not know (verbatim) instead of
dropping them: the job spec lists the fields worth type-checking and renaming, and the
rest of a job passes through untouched to `structs.job.canonicalize`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nomadpaas.agent.http.decode import (
    ANY,
    BOOL,
    INT,
    INT64,
    STR,
    UINT64,
    DecodeError,
    ListOf,
    MapOf,
    Scalar,
    Struct,
)
from nomadpaas.agent.http.errors import bad_request
from nomadpaas.agent.structs.job import canonicalize

DURATION = Scalar("int", "time.Duration")


@dataclass(frozen=True)
class OpenStruct(Struct):
    """A Struct whose unknown keys are kept as sent (free-form parts of a job)."""

    def decode(self, value: Any, where: str = "") -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise DecodeError(f"json: cannot unmarshal into Go value of type {self.name}")
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = self.canonical(key)
            if name is None:
                out.setdefault(key, item)
                continue
            out[name] = self.fields[name].decode(item, f"{where or self.name}.{name}")
        return out


UPDATE = OpenStruct(
    "UpdateStrategy",
    {
        "Stagger": DURATION, "MaxParallel": INT, "HealthCheck": STR, "MinHealthyTime": DURATION,
        "HealthyDeadline": DURATION, "ProgressDeadline": DURATION, "AutoRevert": BOOL,
        "AutoPromote": BOOL, "Canary": INT,
    },
)  # fmt: skip
RESTART = OpenStruct(
    "RestartPolicy",
    {"Attempts": INT, "Interval": DURATION, "Delay": DURATION, "Mode": STR,
     "RenderTemplates": BOOL},
)  # fmt: skip
RESCHEDULE = OpenStruct(
    "ReschedulePolicy",
    {"Attempts": INT, "Interval": DURATION, "Delay": DURATION, "DelayFunction": STR,
     "MaxDelay": DURATION, "Unlimited": BOOL},
)  # fmt: skip
PORT = OpenStruct("Port", {"Label": STR, "Value": INT, "To": INT, "HostNetwork": STR})
NETWORK = OpenStruct(
    "NetworkResource",
    {"Mode": STR, "ReservedPorts": ListOf(PORT), "DynamicPorts": ListOf(PORT), "MBits": INT},
)
RESOURCES = OpenStruct(
    "Resources",
    {"CPU": INT, "Cores": INT, "MemoryMB": INT, "MemoryMaxMB": INT, "DiskMB": INT,
     "Networks": ListOf(NETWORK)},
)  # fmt: skip
TASK = OpenStruct(
    "Task",
    {
        "Name": STR, "Driver": STR, "User": STR, "Config": MapOf(ANY), "Env": MapOf(STR),
        "Meta": MapOf(STR), "Resources": RESOURCES, "KillTimeout": DURATION, "KillSignal": STR,
        "ShutdownDelay": DURATION, "RestartPolicy": RESTART, "Leader": BOOL,
    },
)  # fmt: skip
GROUP = OpenStruct(
    "TaskGroup",
    {
        "Name": STR, "Count": INT, "Update": UPDATE, "Tasks": ListOf(TASK),
        "RestartPolicy": RESTART, "ReschedulePolicy": RESCHEDULE, "Networks": ListOf(NETWORK),
        "Meta": MapOf(STR), "ShutdownDelay": DURATION, "MaxRunDuration": DURATION,
    },
)  # fmt: skip
PARAMETERIZED = OpenStruct(
    "ParameterizedJobConfig",
    {"Payload": STR, "MetaRequired": ListOf(STR), "MetaOptional": ListOf(STR)},
)
JOB = OpenStruct(
    "Job",
    {
        "ID": STR, "Name": STR, "Namespace": STR, "Region": STR, "Type": STR, "Priority": INT,
        "AllAtOnce": BOOL, "Datacenters": ListOf(STR), "NodePool": STR, "Meta": MapOf(STR),
        "Update": UPDATE, "Reschedule": RESCHEDULE, "ParameterizedJob": PARAMETERIZED,
        "TaskGroups": ListOf(GROUP), "Stop": BOOL, "Dispatched": BOOL, "Payload": ANY,
    },
)  # fmt: skip
REGISTER_REQUEST = Struct(
    "JobRegisterRequest",
    {
        "Job": JOB, "EnforceIndex": BOOL, "JobModifyIndex": UINT64, "PolicyOverride": BOOL,
        "PreserveCounts": BOOL, "PreserveResources": BOOL, "EvalPriority": INT,
        "Submission": ANY, "Region": STR, "Namespace": STR, "SecretID": STR,
    },
)  # fmt: skip
PLAN_REQUEST = Struct(
    "JobPlanRequest", {"Job": JOB, "Diff": BOOL, "PolicyOverride": BOOL, "Namespace": STR}
)
VALIDATE_REQUEST = Struct("JobValidateRequest", {"Job": JOB, "Namespace": STR})
REVERT_REQUEST = Struct(
    "JobRevertRequest", {"JobID": STR, "JobVersion": UINT64, "EnforcePriorVersion": UINT64}
)
STABLE_REQUEST = Struct("JobStabilityRequest", {"JobID": STR, "JobVersion": UINT64, "Stable": BOOL})
SCALE_REQUEST = Struct(
    "ScalingRequest",
    {
        "Count": INT64, "Target": MapOf(STR), "Message": STR, "Error": BOOL, "Meta": MapOf(ANY),
        "PolicyOverride": BOOL, "JobModifyIndex": UINT64,
    },
)  # fmt: skip
DISPATCH_REQUEST = Struct(
    "JobDispatchRequest",
    {"JobID": STR, "Payload": STR, "Meta": MapOf(STR), "IdPrefixTemplate": STR, "Priority": INT},
)
EVAL_OPTIONS = Struct("EvalOptions", {"ForceReschedule": BOOL})
EVALUATE_REQUEST = Struct("JobEvaluateRequest", {"JobID": STR, "EvalOptions": EVAL_OPTIONS})
TAG_REQUEST = Struct("TagVersionRequest", {"Version": UINT64, "Description": STR})


def api_job(
    body: dict[str, Any], query_namespace: str | None, path_id: str | None = None
) -> dict[str, Any]:
    """The body's Job, checked (400s in Nomad's order) and canonicalized, with the
    namespace resolved: `?namespace=` > body Namespace > Job.Namespace > default."""
    job = body.get("Job")
    if job is None:
        raise bad_request("Job must be specified")
    if job.get("ID") is None:
        raise bad_request("Job ID hasn't been provided")
    if path_id is not None and job["ID"] != path_id:
        raise bad_request("Job ID does not match name")
    if job.get("Type") == "system":
        for group in job.get("TaskGroups") or ():
            if group.get("Scaling") is not None:
                raise bad_request(
                    "Task groups with job scaling blocks are not supported for system jobs"
                )
    namespace = query_namespace or body.get("Namespace") or job.get("Namespace") or "default"
    job = canonicalize({**job, "Namespace": namespace})
    if job.get("Region") in ("", "global", None):
        job["Region"] = "global"
    return job
