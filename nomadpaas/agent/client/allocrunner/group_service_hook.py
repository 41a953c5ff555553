"""Registers a group's services when the allocation starts and deregisters them before
its tasks are killed; mirrors client/allocrunner/group_service_hook.go.

Order matters in the alloc runner's prekill phase: this hook must run *before*
GroupShutdownDelayHook, so the router stops sending traffic (the instance leaves
`/v1/health/service/:name?passing`) and only then does the group's ShutdownDelay start.
As in Nomad, group services register at prerun, before the tasks run: their checks start
critical (or at `InitialStatus`) and pass once the task listens.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from nomadpaas.agent.client.allocdir import AllocDir
from nomadpaas.agent.client.serviceregistration.registry import ServiceRegistry
from nomadpaas.agent.client.serviceregistration.workload import build_instances, group_of

log = logging.getLogger("nomadpaas.agent.client.allocrunner")

DESIRED_STOP = ("stop", "evict")


class GroupServiceHook:
    """prerun: register; update: re-register (tags, canary promotion); prekill, postrun
    and destroy: deregister. Registrations outlive an agent shutdown (no shutdown hook),
    like the tasks do."""

    name = "group_services"

    def __init__(self, registry: ServiceRegistry) -> None:
        self.registry = registry
        self._deregistered = False

    def prerun(self, alloc: Mapping[str, Any], alloc_dir: AllocDir) -> None:
        if alloc.get("DesiredStatus") in DESIRED_STOP:
            return  # restored after a stop was asked: nothing to announce
        self._register(alloc)

    def update(self, alloc: Mapping[str, Any]) -> None:
        """A newer allocation from the server (in-place update, canary promotion)."""
        if self._deregistered or alloc.get("DesiredStatus") in DESIRED_STOP:
            return
        self._register(alloc)

    def prekill(self, alloc: Mapping[str, Any]) -> None:
        self._deregistered = True
        removed = self.registry.deregister_alloc(str(alloc.get("ID", "")), task="")
        if removed:
            log.info(
                "alloc %s: deregistered group services %s",
                alloc.get("ID"),
                ", ".join(i.name for i in removed),
            )

    def postrun(self, alloc: Mapping[str, Any]) -> None:
        """Every task is dead (failed, completed): nothing left to route to."""
        self._deregistered = True
        self.registry.deregister_alloc(str(alloc.get("ID", "")), task="")

    def destroy(self, alloc: Mapping[str, Any], alloc_dir: AllocDir) -> None:
        self._deregistered = True
        self.registry.deregister_alloc(str(alloc.get("ID", "")))

    def _register(self, alloc: Mapping[str, Any]) -> None:
        services = group_of(alloc).get("Services") or []
        instances = build_instances(alloc, services)
        wanted = {i.id for i in instances}
        stale = [
            r.instance.id
            for r in self.registry.instances(alloc_id=str(alloc.get("ID", "")))
            if r.instance.task == "" and r.instance.id not in wanted
        ]
        self.registry.deregister(stale)
        self.registry.register(instances)
