"""`checks` health against the real agent: a canary whose HTTP check never passes is
unhealthy at its healthy_deadline (`Alloc Unhealthy` says why), the deployment fails and
auto-reverts; the reverted version's allocation is judged again by its passing check."""

from __future__ import annotations

from typing import Any

from agent.deployments.deploy_support import (
    S,
    allocs,
    deployment_of_version,
    group_state,
    register,
    running,
    stable_flags,
    update_block,
    wait_status,
)
from agent.jobs_support import client
from testsupport import ServerProcess

SERVER_CODE = """
import http.server, os
port = int(os.environ["NOMAD_PORT_http"])
http.server.ThreadingHTTPServer(
    ("127.0.0.1", port), http.server.SimpleHTTPRequestHandler
).serve_forever()
"""


def checked_job(release: str, check_path: str) -> dict[str, Any]:
    update = update_block(
        HealthCheck="checks",
        MinHealthyTime=S,
        HealthyDeadline=4 * S,
        Canary=1,
        AutoPromote=True,
        AutoRevert=True,
    )
    check = {"Type": "http", "Path": check_path, "Interval": S // 2, "Timeout": S}
    return {
        "ID": "web",
        "Type": "service",
        "Update": update,
        "TaskGroups": [
            {
                "Name": "app",
                "Count": 1,
                "Networks": [{"DynamicPorts": [{"Label": "http"}]}],
                "Services": [{"Name": "web", "PortLabel": "http", "Checks": [check]}],
                "ReschedulePolicy": {"Attempts": 0, "Unlimited": False},
                "Tasks": [
                    {
                        "Name": "srv",
                        "Driver": "raw_exec",
                        "Env": {"RELEASE": release},
                        "KillTimeout": S,
                        "Config": {"command": "python3", "args": ["-u", "-c", SERVER_CODE]},
                    }
                ],
            }
        ],
    }


def test_failing_http_check_fails_canary_at_deadline_and_reverts(agent: ServerProcess) -> None:
    n = client(agent)
    register(n, checked_job("v0", "/"))
    d0 = wait_status(n, deployment_of_version(n, "web", 0)["ID"], "successful")
    assert group_state(d0)["HealthyAllocs"] == 1
    (old,) = running(n, "web")

    register(n, checked_job("v1", "/no-such-page"))
    d1 = deployment_of_version(n, "web", 1)
    d1 = wait_status(n, d1["ID"], "failed", timeout_s=20)
    assert d1["StatusDescription"] == (
        "Failed due to unhealthy allocations - rolling back to job version 0"
    )
    (canary_id,) = group_state(d1)["PlacedCanaries"]
    canary = next(a for a in allocs(n, "web") if a["ID"] == canary_id)
    assert canary["DeploymentStatus"]["Healthy"] is False
    messages = [
        e["DisplayMessage"]
        for e in canary["TaskStates"]["srv"]["Events"]
        if e["Type"] == "Alloc Unhealthy"
    ]
    assert messages == ["Services not healthy by deadline"]

    d2 = wait_status(n, deployment_of_version(n, "web", 2)["ID"], "successful")
    assert group_state(d2)["HealthyAllocs"] == 1
    assert [a["ID"] for a in running(n, "web")] == [old["ID"]]  # never stopped
    assert stable_flags(n, "web") == {0: True, 1: False, 2: True}
