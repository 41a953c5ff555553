"""Registers a task's own services while it runs; mirrors
client/allocrunner/taskrunner/service_hook.go.

poststart (also after a restart or a re-attach): register. prekill: deregister, before
the task runner's `Waiting for shutdown delay` and the kill signal. exited (the task
ended; a restart registers again) and stop (terminal): deregister.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import TaskStopRequest
from nomadpaas.agent.client.serviceregistration.registry import ServiceRegistry
from nomadpaas.agent.client.serviceregistration.workload import build_instances


class ServiceHook:
    name = "consul_services"  # Nomad's name for it, whatever the provider

    def __init__(self, registry: ServiceRegistry) -> None:
        self.registry = registry

    def poststart(self, alloc: Mapping[str, Any], task: Mapping[str, Any]) -> None:
        services = task.get("Services") or []
        if services:
            self.registry.register(build_instances(alloc, services, str(task["Name"])))

    def prekill(self, alloc: Mapping[str, Any], task: Mapping[str, Any]) -> None:
        self._deregister(alloc, task)

    def exited(self, alloc: Mapping[str, Any], task: Mapping[str, Any]) -> None:
        self._deregister(alloc, task)

    def stop(self, req: TaskStopRequest) -> None:
        self._deregister(req.alloc, req.task)

    def _deregister(self, alloc: Mapping[str, Any], task: Mapping[str, Any]) -> None:
        self.registry.deregister_alloc(str(alloc.get("ID", "")), task=str(task["Name"]))
