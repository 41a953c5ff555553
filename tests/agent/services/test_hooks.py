"""The group and task service hooks, driven directly with a real registry and a real
process (`python -m http.server` on the allocation's port): registration at prerun /
poststart, port by label, canary tags and their promotion, deregistration at prekill
while the process still runs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from agent.client.client_support import make_alloc, py_task
from agent.services.services_support import wait_for
from testsupport import free_port

from nomadpaas.agent.client.allocrunner.group_service_hook import GroupServiceHook
from nomadpaas.agent.client.allocrunner.taskrunner.service_hook import ServiceHook
from nomadpaas.agent.client.serviceregistration.registry import ServiceRegistry
from nomadpaas.agent.structs.duration import NS_PER_S

CHECK = {"Type": "http", "Path": "/", "Interval": 1 * NS_PER_S, "Timeout": 2 * NS_PER_S}


def alloc_with(port: int, *, group_services: Any = None, task_services: Any = None,
               canary: bool = False) -> dict[str, Any]:  # fmt: skip
    task = py_task("server", "pass", Services=task_services)
    alloc = make_alloc([task], group_extra={"Services": group_services})
    alloc["AllocatedResources"] = {
        "Shared": {"Ports": [{"Label": "http", "Value": port, "To": 0, "HostIP": "127.0.0.1"}]}
    }
    if canary:
        alloc["DeploymentStatus"] = {"Canary": True}
    return alloc


@pytest.fixture
def registry() -> Iterator[ServiceRegistry]:
    reg = ServiceRegistry("node-1", "node", "dc1")
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def http_port() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield port, procs
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


def serve(port: int, procs: list[subprocess.Popen[bytes]]) -> None:
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ))  # fmt: skip


def test_group_services_register_then_deregister_before_kill(
    registry: ServiceRegistry, http_port: tuple[int, list[subprocess.Popen[bytes]]]
) -> None:
    port, procs = http_port
    service = {"Name": "web", "PortLabel": "http", "Tags": ["live"], "CanaryTags": ["canary"],
               "Meta": {"app": "x"}, "Checks": [CHECK]}  # fmt: skip
    alloc = alloc_with(port, group_services=[service], canary=True)
    hook = GroupServiceHook(registry)
    hook.prerun(alloc, None)  # type: ignore[arg-type]
    [reg] = registry.instances()
    inst = reg.instance
    assert inst.id == f"_nomad-task-{alloc['ID']}-group-g-web-http"
    assert (inst.port, inst.address, inst.tags, inst.task) == (port, "127.0.0.1", ("canary",), "")
    assert dict(inst.meta) == {"app": "x"}
    assert reg.checks[0].status == "critical"  # nothing listens yet
    assert not registry.alloc_checks(alloc["ID"]).healthy
    serve(port, procs)
    wait_for(lambda: registry.alloc_checks(alloc["ID"]).healthy)
    # Promotion: the server clears Canary; the update hook swaps the tags in place.
    promoted = {**alloc, "DeploymentStatus": {"Canary": False, "Healthy": True}}
    hook.update(promoted)
    [reg] = registry.instances()
    assert reg.instance.tags == ("live",) and reg.checks[0].status == "passing"
    hook.prekill(promoted)
    assert registry.instances() == []
    assert procs[0].poll() is None  # deregistered while the task still runs
    hook.update(promoted)  # a late update must not bring it back
    assert registry.instances() == []


def test_task_services_follow_the_task(
    registry: ServiceRegistry, http_port: tuple[int, list[subprocess.Popen[bytes]]]
) -> None:
    port, procs = http_port
    service = {"Name": "api", "PortLabel": "http", "Checks": [{**CHECK, "Type": "tcp"}]}
    alloc = alloc_with(port, task_services=[service])
    task = alloc["Job"]["TaskGroups"][0]["Tasks"][0]
    assert task["Services"][0]["Name"] == "api"
    hook = ServiceHook(registry)
    serve(port, procs)
    hook.poststart(alloc, task)
    [reg] = registry.instances()
    assert reg.instance.id == f"_nomad-task-{alloc['ID']}-server-api-http"
    assert reg.instance.task == "server"
    wait_for(lambda: registry.alloc_checks(alloc["ID"]).healthy)
    hook.prekill(alloc, task)
    assert registry.instances() == []
    hook.poststart(alloc, task)  # a restart registers again
    hook.exited(alloc, task)
    assert registry.instances() == []
