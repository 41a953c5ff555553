"""Helpers for the deployment scenario tests: job bodies with an update block, bounded
polling of deployments, allocations and job versions over python-nomad."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import nomad

T = TypeVar("T")
S = 1_000_000_000  # ns per second
POLL_TIMEOUT_S = 30.0
POLL_S = 0.1
GROUP = "app"


def update_block(**over: Any) -> dict[str, Any]:
    """A fast update strategy: task_states health, 1 s min_healthy_time."""
    block: dict[str, Any] = {
        "MaxParallel": 2,
        "HealthCheck": "task_states",
        "MinHealthyTime": 1 * S,
        "HealthyDeadline": 20 * S,
        "ProgressDeadline": 0,
        "AutoRevert": False,
        "AutoPromote": False,
        "Canary": 0,
    }
    block.update(over)
    return block


def service_job(
    version_tag: str,
    *,
    count: int = 2,
    command: str = "/bin/sleep",
    args: list[str] | None = None,
    update: dict[str, Any] | None = None,
    job_id: str = "web",
    attempts: int = 0,
) -> dict[str, Any]:
    """A raw_exec service job; `version_tag` goes into the task Env (a destructive change)."""
    return {
        "ID": job_id,
        "Name": job_id,
        "Type": "service",
        "Update": update if update is not None else update_block(),
        "TaskGroups": [
            {
                "Name": GROUP,
                "Count": count,
                "RestartPolicy": {"Attempts": attempts, "Mode": "fail", "Delay": S // 10},
                "ReschedulePolicy": {"Attempts": 0, "Unlimited": False},
                "Tasks": [
                    {
                        "Name": "srv",
                        "Driver": "raw_exec",
                        "Env": {"RELEASE": version_tag},
                        "KillTimeout": S,
                        "Config": {"command": command, "args": args or ["300"]},
                    }
                ],
            }
        ],
    }


def wait_for(fn: Callable[[], T | None], what: str, timeout_s: float = POLL_TIMEOUT_S) -> T:
    """Poll `fn` until it returns something truthy; fail with `what` and the last value."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {last!r}")


def register(n: nomad.Nomad, job: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = n.job.register_job(job["ID"], {"Job": job})
    return out


def deployment_of_version(n: nomad.Nomad, job_id: str, version: int) -> dict[str, Any]:
    """Wait for the deployment of that job version to exist; returns it."""

    def find() -> dict[str, Any] | None:
        for d in n.job.get_deployments(job_id):
            if d["JobVersion"] == version:
                return dict(d)
        return None

    return wait_for(find, f"a deployment of {job_id} v{version}")


def wait_status(
    n: nomad.Nomad, deployment_id: str, status: str, timeout_s: float = POLL_TIMEOUT_S
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        d: dict[str, Any] = n.deployment.get_deployment(deployment_id)
        return d if d["Status"] == status else None

    return wait_for(check, f"deployment {deployment_id[:8]} {status}", timeout_s)


def group_state(d: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = d["TaskGroups"][GROUP]
    return state


def stable_flags(n: nomad.Nomad, job_id: str) -> dict[int, bool]:
    versions = n.job.get_versions(job_id)["Versions"]
    return {int(v["Version"]): bool(v["Stable"]) for v in versions}


def allocs(n: nomad.Nomad, job_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = n.job.get_allocations(job_id)
    return out


def running(n: nomad.Nomad, job_id: str) -> list[dict[str, Any]]:
    return [
        a
        for a in allocs(n, job_id)
        if a["DesiredStatus"] == "run" and a["ClientStatus"] == "running"
    ]
