"""Turns an allocation's `Services[]` blocks into registry instances (IDs, address, port,
canary tags, checks); mirrors client/serviceregistration/workload.go and the ID helpers of
command/agent/consul (MakeAllocServiceID, MakeCheckID).

Address: this node's loopback address (raw_exec tasks share the host network). Port: the
service's `PortLabel` looked up in the allocation's assigned ports
(`AllocatedResources.Shared.Ports[{Label, Value, To, HostIP}]`; the host port, as
`address_mode = "auto"|"host"` does), or a literal number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from nomadpaas.agent.client.serviceregistration.checks import (
    DEFAULT_TIMEOUT_S,
    SUPPORTED_TYPES,
    CheckSpec,
)
from nomadpaas.agent.client.serviceregistration.registry import (
    PROVIDER_CONSUL,
    PROVIDER_NOMAD,
    CheckDefinition,
    ServiceInstance,
)

NODE_ADDRESS = "127.0.0.1"
SERVICE_ID_PREFIX = "_nomad-task-"
CHECK_ID_PREFIX = "_nomad-check-"
NS_PER_S = 1_000_000_000


def group_of(alloc: Mapping[str, Any]) -> Mapping[str, Any]:
    for group in (alloc.get("Job") or {}).get("TaskGroups") or []:
        if group.get("Name") == alloc.get("TaskGroup"):
            return dict(group)
    return {}


def service_id(alloc_id: str, owner: str, service: Mapping[str, Any]) -> str:
    """Nomad's service ID: `_nomad-task-<alloc>-<task|group-<group>>-<name>-<port label>`."""
    return f"{SERVICE_ID_PREFIX}{alloc_id}-{owner}-{service.get('Name')}-{service.get('PortLabel')}"


def check_id(sid: str, check: Mapping[str, Any], provider: str) -> str:
    """A stable ID from the service ID and the check's definition: Consul-provider checks
    get `_nomad-check-<sha1>`, Nomad-provider ones a bare md5 (structs.NomadCheckID)."""
    blob = (sid + json.dumps(dict(check), sort_keys=True, default=str)).encode()
    if provider == PROVIDER_NOMAD:
        return hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return CHECK_ID_PREFIX + hashlib.sha1(blob, usedforsecurity=False).hexdigest()


def alloc_ports(alloc: Mapping[str, Any]) -> dict[str, int]:
    """Port label → host port, from the allocation's assigned ports."""
    shared = (alloc.get("AllocatedResources") or {}).get("Shared") or {}
    ports: dict[str, int] = {}
    for port in shared.get("Ports") or []:
        ports[str(port.get("Label", ""))] = int(port.get("Value") or 0)
    for network in shared.get("Networks") or []:  # older allocations: ports per network
        for key in ("ReservedPorts", "DynamicPorts"):
            for port in network.get(key) or []:
                ports.setdefault(str(port.get("Label", "")), int(port.get("Value") or 0))
    return ports


def resolve_port(label: str, ports: Mapping[str, int]) -> int:
    if not label:
        return 0
    if label in ports:
        return ports[label]
    return int(label) if label.isdigit() else 0


def is_canary(alloc: Mapping[str, Any]) -> bool:
    return bool((alloc.get("DeploymentStatus") or {}).get("Canary"))


def build_instances(
    alloc: Mapping[str, Any], services: Sequence[Mapping[str, Any]], task: str = ""
) -> list[ServiceInstance]:
    """The instances of a group's (`task=""`) or a task's services in this allocation."""
    alloc_id = str(alloc.get("ID", ""))
    group = str(alloc.get("TaskGroup", ""))
    owner = task or f"group-{group}"
    ports = alloc_ports(alloc)
    canary = is_canary(alloc)
    out = []
    for svc in services:
        provider = str(svc.get("Provider") or PROVIDER_CONSUL)
        sid = service_id(alloc_id, owner, svc)
        port = resolve_port(str(svc.get("PortLabel") or ""), ports)
        address = str(svc.get("Address") or NODE_ADDRESS)
        tags = list(svc.get("Tags") or [])
        if canary and svc.get("CanaryTags"):
            tags = list(svc["CanaryTags"])
        meta = {str(k): str(v) for k, v in (svc.get("Meta") or {}).items()}
        if canary:
            meta.update({str(k): str(v) for k, v in (svc.get("CanaryMeta") or {}).items()})
        checks = tuple(
            _check(sid, dict(c), provider, address, port, ports) for c in svc.get("Checks") or []
        )
        out.append(
            ServiceInstance(
                id=sid,
                name=str(svc.get("Name") or ""),
                provider=provider,
                namespace=str(alloc.get("Namespace") or "default"),
                job_id=str(alloc.get("JobID", "")),
                group=group,
                task=task,
                alloc_id=alloc_id,
                alloc_name=str(alloc.get("Name", "")),
                address=address,
                port=port,
                tags=tuple(tags),
                meta=tuple(sorted(meta.items())),
                checks=checks,
                canary=canary,
            )
        )
    return out


def _check(
    sid: str,
    check: dict[str, Any],
    provider: str,
    address: str,
    service_port: int,
    ports: Mapping[str, int],
) -> CheckDefinition:
    ctype = str(check.get("Type") or "")
    interval_ns = int(check.get("Interval") or 0)
    timeout_ns = int(check.get("Timeout") or 0)
    label = str(check.get("PortLabel") or "")
    port = resolve_port(label, ports) if label else service_port
    spec = None
    if ctype in SUPPORTED_TYPES:
        spec = CheckSpec(
            type=ctype,
            address=address,
            port=port,
            interval_s=interval_ns / NS_PER_S,
            timeout_s=timeout_ns / NS_PER_S if timeout_ns > 0 else DEFAULT_TIMEOUT_S,
            path=str(check.get("Path") or "/"),
            method=str(check.get("Method") or "GET"),
            protocol=str(check.get("Protocol") or "http"),
            headers={
                str(k): [str(x) for x in v or []] for k, v in (check.get("Header") or {}).items()
            },
            body=str(check.get("Body") or ""),
            tls_skip_verify=bool(check.get("TLSSkipVerify")),
        )
    return CheckDefinition(
        id=check_id(sid, check, provider),
        name=str(check.get("Name") or ""),
        type=ctype,
        spec=spec,
        initial_status=str(check.get("InitialStatus") or ""),
        on_update=str(check.get("OnUpdate") or "require_healthy"),
        notes=str(check.get("Notes") or ""),
        interval_ns=interval_ns,
        timeout_ns=timeout_ns,
    )


def _headers(raw: Any) -> dict[str, list[str]]:
    return {str(k): [str(x) for x in v or []] for k, v in (raw or {}).items()}
