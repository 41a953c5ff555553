"""Job and dispatch validation with Nomad's exact error texts.

Mirrors Job.Validate (nomad/structs), the validate hook and validateDispatchRequest.

`validate` runs on a canonicalized job and returns the flat error list the server's
validate hook builds (job errors, then the hook's own checks). Nested validation failures
(`Task group web validation failed: ...`) embed the inner go-multierror text verbatim,
exactly as Go's `fmt.Errorf("...: %v", mErr)` does, so `multierror_text(validate(job))`
is byte-for-byte the 500 body Nomad sends. Unknown drivers are *not* validation errors:
Nomad reports them as placement failures (`FailedTGAllocs`, missing drivers).
"""

from __future__ import annotations

from typing import Any

from nomadpaas.agent.structs.duration import NS_PER_S, format_duration
from nomadpaas.agent.structs.job import (
    DISPATCH_PAYLOAD_FORBIDDEN,
    DISPATCH_PAYLOAD_OPTIONAL,
    DISPATCH_PAYLOAD_REQUIRED,
    JOB_MAX_PRIORITY,
    JOB_MIN_PRIORITY,
    JOB_TYPE_BATCH,
    JOB_TYPE_SERVICE,
    JOB_TYPE_SYSBATCH,
    JOB_TYPE_SYSTEM,
    JOB_TYPES,
    Job,
)

DISPATCH_PAYLOAD_SIZE_LIMIT_BYTES = 16 * 1024  # checked before compression
RESTART_POLICY_MIN_INTERVAL_NS = 5 * NS_PER_S
RESCHEDULE_POLICY_MIN_INTERVAL_NS = 15 * NS_PER_S
RESCHEDULE_POLICY_MIN_DELAY_NS = 5 * NS_PER_S
RESCHEDULE_DELAY_FUNCTIONS = ("constant", "exponential", "fibonacci")
UPDATE_HEALTH_CHECKS = ("checks", "task_states", "manual")
MIN_CPU_MHZ = 1
MIN_MEMORY_MB = 10


def multierror_text(errors: list[str]) -> str:
    """go-multierror's ListFormatFunc: the body of a validation 500."""
    if len(errors) == 1:
        return f"1 error occurred:\n\t* {errors[0]}\n\n"
    points = "\n\t".join(f"* {e}" for e in errors)
    return f"{len(errors)} errors occurred:\n\t{points}\n\n"


def go_list(items: list[str]) -> str:
    """Go's %v of a []string: `[a b]`."""
    return "[" + " ".join(items) + "]"


def validate(job: Job) -> list[str]:
    """Every error the register endpoint reports for a canonicalized job, in Nomad's order."""
    errs = _validate_job(job)
    if job.get("Type") == "_core":
        errs.append("job type cannot be core")
    if job.get("Payload"):
        errs.append("job can't be submitted with a payload, only dispatched")
    priority = job.get("Priority", 0)
    if not JOB_MIN_PRIORITY <= priority <= JOB_MAX_PRIORITY:
        errs.append(f"job priority must be between [{JOB_MIN_PRIORITY}, {JOB_MAX_PRIORITY}]")
    return errs


def _validate_job(job: Job) -> list[str]:
    errs: list[str] = []
    job_id = job.get("ID") or ""
    if not job.get("Region") and job.get("Multiregion") is None:
        errs.append("Missing job region")
    if not job_id:
        errs.append("Missing job ID")
    elif " " in job_id:
        errs.append("Job ID contains a space")
    elif "\0" in job_id:
        errs.append("Job ID contains a null character")
    if not job.get("Name"):
        errs.append("Missing job name")
    if not job.get("Namespace"):
        errs.append("Job must be in a namespace")
    job_type = job.get("Type") or ""
    if not job_type:
        errs.append("Missing job type")
    elif job_type not in (*JOB_TYPES, "_core"):
        errs.append(f'Invalid job type: "{job_type}"')
    datacenters = job.get("Datacenters") or []
    if not datacenters:
        errs.append("Missing job datacenters")
    errs.extend("Job datacenter must be non-empty string" for dc in datacenters if not dc)
    groups = job.get("TaskGroups") or []
    if not groups:
        errs.append("Missing job task groups")
    seen: dict[str, int] = {}
    for idx, group in enumerate(groups):
        name = group.get("Name") or ""
        if not name:
            errs.append(f"Job task group {idx + 1} missing name")
        elif name in seen:
            errs.append(f"Job task group {idx + 1} redefines '{name}' from group {seen[name] + 1}")
        else:
            seen[name] = idx
        if (group.get("ShutdownDelay") or 0) < 0:
            errs.append("ShutdownDelay must be a positive value")
        if job_type == JOB_TYPE_SYSTEM and (group.get("Count") or 0) > 1:
            errs.append(
                f"Job task group {name} has count {group['Count']}. "
                "Count cannot exceed 1 with system scheduler"
            )
    for group in groups:
        inner = _validate_group(group, job)
        if inner:
            errs.append(
                f"Task group {group.get('Name') or ''} validation failed: {multierror_text(inner)}"
            )
    periodic = job.get("Periodic")
    if periodic and periodic.get("Enabled") and job_type not in (JOB_TYPE_BATCH, JOB_TYPE_SYSBATCH):
        errs.append('Periodic can only be used with "batch" or "sysbatch" scheduler')
    param = job.get("ParameterizedJob")
    if param is not None:
        if job_type not in (JOB_TYPE_BATCH, JOB_TYPE_SYSBATCH):
            errs.append('Parameterized job can only be used with "batch" or "sysbatch" scheduler')
        errs.extend(_validate_parameterized(param))
    return errs


def _validate_parameterized(param: dict[str, Any]) -> list[str]:
    errs: list[str] = []
    payload = param.get("Payload") or ""
    if payload not in (
        DISPATCH_PAYLOAD_OPTIONAL,
        DISPATCH_PAYLOAD_REQUIRED,
        DISPATCH_PAYLOAD_FORBIDDEN,
    ):
        errs.append(f'Unknown payload requirement: "{payload}"')
    optional = set(param.get("MetaOptional") or [])
    both = [k for k in param.get("MetaRequired") or [] if k in optional]
    if both:
        errs.append(
            "Required and optional meta keys should be disjoint. "
            f"Following keys exist in both: {go_list(both)}"
        )
    return errs


def _validate_group(group: dict[str, Any], job: Job) -> list[str]:
    errs: list[str] = []
    job_type = job.get("Type") or ""
    name = group.get("Name") or ""
    if not name:
        errs.append("Missing task group name")
    if (group.get("Count") or 0) < 0:
        errs.append("Task group count can't be negative")
    tasks = group.get("Tasks") or []
    if not tasks:
        errs.append("Missing tasks for task group")
    restart = group.get("RestartPolicy")
    if restart is None:
        errs.append(f"Task Group {name} should have a restart policy")
    else:
        errs.extend(_validate_restart(restart))
    reschedule = group.get("ReschedulePolicy")
    if job_type in (JOB_TYPE_SYSTEM, JOB_TYPE_SYSBATCH):
        if reschedule is not None:
            errs.append("System or sysbatch jobs should not have a reschedule policy")
    elif reschedule is None:
        errs.append(f"Task Group {name} should have a reschedule policy")
    else:
        errs.extend(_validate_reschedule(reschedule))
    disk = group.get("EphemeralDisk")
    if disk is None:
        errs.append(f"Task Group {name} should have an ephemeral disk object")
    elif (disk.get("SizeMB") or 0) < 10:
        errs.append(f"minimum DiskMB value is 10; got {disk.get('SizeMB') or 0}")
    update = group.get("Update")
    if update is not None:
        if job_type not in (JOB_TYPE_SERVICE, JOB_TYPE_SYSTEM):
            errs.append(f'Job type "{job_type}" does not allow update block')
        errs.extend(validate_update(update))
    if group.get("Migrate") is not None and job_type != JOB_TYPE_SERVICE:
        errs.append(f'Job type "{job_type}" does not allow migrate block')
    names: dict[str, int] = {}
    leaders = mains = 0
    for idx, task in enumerate(tasks):
        tname = task.get("Name") or ""
        if not tname:
            errs.append(f"Task {idx + 1} missing name")
        elif tname in names:
            errs.append(f"Task {idx + 1} redefines '{tname}' from task {names[tname] + 1}")
        else:
            names[tname] = idx
        leaders += bool(task.get("Leader"))
        lifecycle = task.get("Lifecycle")
        mains += lifecycle is None or not lifecycle.get("Hook")
    if leaders > 1:
        errs.append("Only one task may be marked as leader")
    if tasks and mains == 0:
        errs.append(f"Task group {name} must have at least one main task")
    for task in tasks:
        inner = _validate_task(task, group, job_type)
        if inner:
            errs.append(
                f"Task {task.get('Name') or ''} validation failed: {multierror_text(inner)}"
            )
    return errs


def validate_update(update: dict[str, Any]) -> list[str]:
    """UpdateStrategy.Validate, durations printed as Go does (`10s`, `5m0s`)."""
    errs: list[str] = []
    fd = format_duration
    health, max_par, canary = (
        update.get("HealthCheck"),
        update.get("MaxParallel", 0),
        update.get("Canary", 0),
    )
    min_healthy, deadline = update.get("MinHealthyTime", 0), update.get("HealthyDeadline", 0)
    progress, stagger = update.get("ProgressDeadline", 0), update.get("Stagger", 0)
    if health not in UPDATE_HEALTH_CHECKS:
        errs.append(f'Invalid health check given: "{health}"')
    if max_par < 0:
        errs.append(f"Max parallel can not be less than zero: {max_par} < 0")
    if canary < 0:
        errs.append(f"Canary count can not be less than zero: {canary} < 0")
    if canary == 0 and update.get("AutoPromote"):
        errs.append("Auto Promote requires a Canary count greater than zero")
    if min_healthy < 0:
        errs.append(f"Minimum healthy time may not be less than zero: {fd(min_healthy)}")
    if deadline <= 0:
        errs.append(f"Healthy deadline must be greater than zero: {fd(deadline)}")
    if progress < 0:
        errs.append(f"Progress deadline must be zero or greater: {fd(progress)}")
    if min_healthy >= deadline:
        errs.append(
            "Minimum healthy time must be less than healthy deadline: "
            f"{fd(min_healthy)} > {fd(deadline)}"
        )
    if progress != 0 and deadline >= progress:
        errs.append(
            f"Healthy deadline must be less than progress deadline: {fd(deadline)} > {fd(progress)}"
        )
    if stagger <= 0:
        errs.append(f"Stagger must be greater than zero: {fd(stagger)}")
    return errs


def _validate_restart(policy: dict[str, Any]) -> list[str]:
    errs: list[str] = []
    mode, attempts = policy.get("Mode"), policy.get("Attempts", 0)
    interval, delay = policy.get("Interval", 0), policy.get("Delay", 0)
    if mode not in ("delay", "fail"):
        errs.append(f'Unsupported restart mode: "{mode}"')
    if attempts == 0 and mode != "fail":
        errs.append(f'Restart policy "{mode}" with {attempts} attempts is ambiguous')
    if interval < RESTART_POLICY_MIN_INTERVAL_NS:
        errs.append(
            f"Interval can not be less than {format_duration(RESTART_POLICY_MIN_INTERVAL_NS)} "
            f"(got {format_duration(interval)})"
        )
    if attempts * delay > interval:
        errs.append(
            f"Nomad can't restart the TaskGroup {attempts} times in an interval of "
            f"{format_duration(interval)} with a delay of {format_duration(delay)}"
        )
    return errs


def _validate_reschedule(policy: dict[str, Any]) -> list[str]:
    """ReschedulePolicy.Validate, without the viable-attempts cross check (not ported)."""
    attempts, unlimited = policy.get("Attempts", 0), bool(policy.get("Unlimited"))
    if not (attempts > 0 or unlimited):
        return []
    errs: list[str] = []
    interval, delay = policy.get("Interval", 0), policy.get("Delay", 0)
    func, max_delay = policy.get("DelayFunction", ""), policy.get("MaxDelay", 0)
    min_delay = format_duration(RESCHEDULE_POLICY_MIN_DELAY_NS)
    if attempts > 0:
        if interval <= 0:
            errs.append("Interval must be a non zero value if Attempts > 0")
        if unlimited:
            errs.append(
                f"Reschedule Policy with Attempts = {attempts}, "
                f"Interval = {format_duration(interval)}, "
                "and Unlimited = true is ambiguous"
            )
            errs.append("If Attempts >0, Unlimited cannot also be set to true")
    if delay < RESCHEDULE_POLICY_MIN_DELAY_NS:
        errs.append(f"Delay cannot be less than {min_delay} (got {format_duration(delay)})")
    if func not in RESCHEDULE_DELAY_FUNCTIONS:
        quoted = " ".join(f'"{f}"' for f in RESCHEDULE_DELAY_FUNCTIONS)
        errs.append(f'Invalid delay function "{func}", must be one of [{quoted}]')
    if func != "constant":
        if max_delay < RESCHEDULE_POLICY_MIN_DELAY_NS:
            # Nomad prints Delay here, not MaxDelay; kept verbatim.
            errs.append(f"Max Delay cannot be less than {min_delay} (got {format_duration(delay)})")
        if max_delay < delay:
            errs.append(
                f"Max Delay cannot be less than Delay {format_duration(delay)} "
                f"(got {format_duration(max_delay)})"
            )
    if not unlimited and interval < RESCHEDULE_POLICY_MIN_INTERVAL_NS:
        errs.append(
            f"Interval cannot be less than {format_duration(RESCHEDULE_POLICY_MIN_INTERVAL_NS)} "
            f"(got {format_duration(interval)})"
        )
    return errs


def _validate_task(task: dict[str, Any], group: dict[str, Any], job_type: str) -> list[str]:
    errs: list[str] = []
    name = task.get("Name") or ""
    if not name:
        errs.append("Missing task name")
    if name == "alloc":
        errs.append('Task cannot be named "alloc"')
    if "/" in name or "\\" in name:
        errs.append("Task name cannot include slashes")
    if not task.get("Driver"):
        errs.append("Missing task driver")
    kill_timeout = task.get("KillTimeout") or 0
    update = group.get("Update") or {}
    progress = update.get("ProgressDeadline") or 0
    if kill_timeout < 0:
        errs.append("KillTimeout must be a positive value")
    elif (
        job_type == JOB_TYPE_SERVICE
        and group.get("Update")
        and progress > 0
        and kill_timeout > progress
    ):
        # "KillTimout" is misspelled in Nomad itself.
        errs.append(
            f"KillTimout ({format_duration(kill_timeout)}) longer than the group's "
            f"ProgressDeadline ({format_duration(progress)})"
        )
    if (task.get("ShutdownDelay") or 0) < 0:
        errs.append("ShutdownDelay must be a positive value")
    res = task.get("Resources")
    if res is None:
        errs.append("Missing task resources")
    else:
        res_errs: list[str] = []
        if res.get("Cores") and res.get("CPU"):
            res_errs.append("Task can only ask for 'cpu' or 'cores' resource, not both.")
        if not res.get("Cores") and (res.get("CPU") or 0) < MIN_CPU_MHZ:
            res_errs.append(f"minimum CPU value is {MIN_CPU_MHZ}; got {res.get('CPU') or 0}")
        if (res.get("MemoryMB") or 0) < MIN_MEMORY_MB:
            res_errs.append(
                f"minimum MemoryMB value is {MIN_MEMORY_MB}; got {res.get('MemoryMB') or 0}"
            )
        if res_errs:
            errs.append(multierror_text(res_errs))
    log = task.get("LogConfig")
    if log is None:
        errs.append("Missing Log Config")
    else:
        files, size = log.get("MaxFiles", 0), log.get("MaxFileSizeMB", 0)
        log_errs: list[str] = []
        if files < 1:
            log_errs.append(f"minimum number of files is 1; got {files}")
        if size < 1:
            log_errs.append(f"minimum file size is 1MB; got {size}")
        disk_mb = (group.get("EphemeralDisk") or {}).get("SizeMB")
        if disk_mb is not None and disk_mb <= files * size:
            log_errs.append(
                f"log storage ({files * size} MB) must be less than requested "
                f"disk capacity ({disk_mb} MB)"
            )
        if log_errs:
            errs.append(multierror_text(log_errs))
    return errs


def validate_dispatch(
    parent: Job, payload: bytes | None, meta: dict[str, str] | None, priority: int
) -> list[str]:
    """Dispatch rule violations (validateDispatchRequest); Nomad stops at the first one."""
    param = parent.get("ParameterizedJob") or {}
    mode = param.get("Payload") or DISPATCH_PAYLOAD_OPTIONAL
    if mode == DISPATCH_PAYLOAD_REQUIRED and not payload:
        return ["Payload is not provided but required by parameterized job"]
    if mode == DISPATCH_PAYLOAD_FORBIDDEN and payload:
        return ["Payload provided but forbidden by parameterized job"]
    if payload and len(payload) > DISPATCH_PAYLOAD_SIZE_LIMIT_BYTES:
        return [
            f"Payload exceeds maximum size; {len(payload)} > {DISPATCH_PAYLOAD_SIZE_LIMIT_BYTES}"
        ]
    required = list(param.get("MetaRequired") or [])
    allowed = set(required) | set(param.get("MetaOptional") or [])
    given = meta or {}
    # Go iterates a map here, so its order is random; sorted keeps ours deterministic.
    unpermitted = sorted(k for k in given if k not in allowed)
    if unpermitted:
        return [f"Dispatch request included unpermitted metadata keys: {go_list(unpermitted)}"]
    missing = sorted(k for k in required if k not in given)
    if missing:
        return [f"Dispatch did not provide required meta keys: {go_list(missing)}"]
    if not JOB_MIN_PRIORITY <= priority <= JOB_MAX_PRIORITY:
        return [f"dispatch job priority must be between [{JOB_MIN_PRIORITY}, {JOB_MAX_PRIORITY}]"]
    return []


def validate_scale(
    job: Job, group_name: str, count: int | None, *, error: bool, active_deployment: bool
) -> tuple[int, str] | None:
    """(HTTP status, message) for a rejected scale request, in Job.Scale's order; None if fine.

    `active_deployment`: the job's latest deployment is active and of this job incarnation.
    The caller answers 404 `job "x" not found` itself before calling.
    """
    if not group_name:
        return 400, "missing task group name for scaling action"
    if count is not None and count < 0:
        return 400, "scaling action count can't be negative"
    if count is not None and error:
        return 400, "scaling action should not contain count if error is true"
    if job.get("Type") == JOB_TYPE_SYSTEM and count is not None and count > 1:
        return 400, 'jobs of type "system" can only be scaled between 0 and 1'
    group = next((g for g in job.get("TaskGroups") or [] if g.get("Name") == group_name), None)
    if group is None:
        return 400, f'task group "{group_name}" specified for scaling does not exist in job'
    if count is None:
        return None
    scaling = group.get("Scaling")
    if scaling is not None:
        low, high = int(scaling.get("Min") or 0), int(scaling.get("Max") or 0)
        if count < low:
            return 400, f"group count was less than scaling policy minimum: {count} < {low}"
        if high < count:
            return 400, f"group count was greater than scaling policy maximum: {count} > {high}"
    if active_deployment:
        return 400, "job scaling blocked due to active deployment"
    return None
