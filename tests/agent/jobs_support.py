"""Helpers for the jobs API tests: python-nomad client, job bodies, bounded polling."""

from __future__ import annotations

import time
from typing import Any

import nomad
from testsupport import ServerProcess

POLL_TIMEOUT_S = 20.0


def client(agent: ServerProcess) -> nomad.Nomad:
    return nomad.Nomad(host="127.0.0.1", port=agent.port, timeout=15)


def raw_exec_job(
    job_id: str = "web",
    count: int = 2,
    *,
    args: list[str] | None = None,
    update: dict[str, Any] | None = None,
    **over: Any,
) -> dict[str, Any]:
    """A raw_exec service job in api.Job form, one group `app` with a dynamic port."""
    job: dict[str, Any] = {
        "ID": job_id,
        "Name": job_id,
        "Type": "service",
        "TaskGroups": [
            {
                "Name": "app",
                "Count": count,
                "Networks": [{"DynamicPorts": [{"Label": "http"}]}],
                "Tasks": [
                    {
                        "Name": "srv",
                        "Driver": "raw_exec",
                        "Config": {"command": "/bin/sleep", "args": args or ["300"]},
                    }
                ],
            }
        ],
    }
    if update is not None:
        job["Update"] = update
    job.update(over)
    return job


NO_DEPLOYMENTS = {"MaxParallel": 0}  # no update strategy: no deployment, no health gating


def wait_eval(n: nomad.Nomad, eval_id: str) -> dict[str, Any]:
    """Poll until the evaluation leaves `pending`; returns it."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while time.monotonic() < deadline:
        evaluation: dict[str, Any] = n.evaluation.get_evaluation(eval_id)
        if evaluation["Status"] != "pending":
            return evaluation
        time.sleep(0.05)
    raise TimeoutError(f"evaluation {eval_id} still pending after {POLL_TIMEOUT_S}s")


def register(n: nomad.Nomad, job: dict[str, Any], **body: Any) -> dict[str, Any]:
    """Register and wait for the evaluation; returns the register response."""
    out: dict[str, Any] = n.job.register_job(job["ID"], {"Job": job, **body})
    if out["EvalID"]:
        assert wait_eval(n, out["EvalID"])["Status"] == "complete"
    return out


def live_allocs(n: nomad.Nomad, job_id: str) -> list[dict[str, Any]]:
    allocs = n.job.get_allocations(job_id)
    return sorted((a for a in allocs if a["DesiredStatus"] == "run"), key=lambda a: a["Name"])
