"""Consul JSON shapes of the registry's instances and checks; mirrors Consul's api/
types (api/catalog.go CatalogService, api/health.go ServiceEntry and HealthCheck,
api/agent.go AgentService and AgentCheck).

The node is this agent: one node, address 127.0.0.1, whose `serfHealth` check is always
passing (as on a single healthy Consul agent). Nomad adds `external-source: nomad` to the
Meta of every service it registers, so does this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nomadpaas.agent.client.serviceregistration.checks import STATUS_PASSING
from nomadpaas.agent.client.serviceregistration.registry import CheckState, RegisteredInstance
from nomadpaas.agent.structs.duration import format_duration

NODE_ADDRESS = "127.0.0.1"
SERF_CHECK_ID = "serfHealth"
EXTERNAL_SOURCE = {"external-source": "nomad"}
WEIGHTS = {"Passing": 1, "Warning": 1}


@dataclass(frozen=True)
class ConsulNode:
    id: str
    name: str
    datacenter: str
    address: str = NODE_ADDRESS

    def tagged_addresses(self) -> dict[str, str]:
        a = self.address
        return {"lan": a, "lan_ipv4": a, "wan": a, "wan_ipv4": a}

    def json(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Node": self.name,
            "Address": self.address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": self.tagged_addresses(),
            "Meta": {"consul-network-segment": ""},
            "CreateIndex": 1,
            "ModifyIndex": 1,
        }

    def serf_check(self) -> dict[str, Any]:
        return {
            "Node": self.name,
            "CheckID": SERF_CHECK_ID,
            "Name": "Serf Health Status",
            "Status": STATUS_PASSING,
            "Notes": "",
            "Output": "Agent alive and reachable",
            "ServiceID": "",
            "ServiceName": "",
            "ServiceTags": [],
            "Type": "",
            "Interval": "",
            "Timeout": "",
            "ExposedPort": 0,
            "Definition": {},
            "CreateIndex": 1,
            "ModifyIndex": 1,
        }


def _meta(reg: RegisteredInstance) -> dict[str, str]:
    return {**dict(reg.instance.meta), **EXTERNAL_SOURCE}


def _service_tagged(reg: RegisteredInstance) -> dict[str, Any]:
    addr = {"Address": reg.instance.address, "Port": reg.instance.port}
    return {"lan_ipv4": addr, "wan_ipv4": dict(addr)}


def _duration(ns: int) -> str:
    return format_duration(ns) if ns > 0 else ""


def check_json(node: ConsulNode, reg: RegisteredInstance, state: CheckState) -> dict[str, Any]:
    """api.HealthCheck."""
    return {
        "Node": node.name,
        "CheckID": state.check.id,
        "Name": state.check.name,
        "Status": state.status,
        "Notes": state.check.notes,
        "Output": state.output,
        "ServiceID": reg.instance.id,
        "ServiceName": reg.instance.name,
        "ServiceTags": list(reg.instance.tags),
        "Type": state.check.type,
        "Interval": _duration(state.check.interval_ns),
        "Timeout": _duration(state.check.timeout_ns),
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": state.create_index,
        "ModifyIndex": state.modify_index,
    }


def service_json(reg: RegisteredInstance) -> dict[str, Any]:
    """api.AgentService as embedded in a health ServiceEntry."""
    inst = reg.instance
    return {
        "ID": inst.id,
        "Service": inst.name,
        "Tags": list(inst.tags),
        "Address": inst.address,
        "TaggedAddresses": _service_tagged(reg),
        "Meta": _meta(reg),
        "Port": inst.port,
        "Weights": dict(WEIGHTS),
        "EnableTagOverride": False,
        "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "Connect": {},
        "PeerName": "",
        "CreateIndex": reg.create_index,
        "ModifyIndex": reg.modify_index,
    }


def health_entry(node: ConsulNode, reg: RegisteredInstance) -> dict[str, Any]:
    """api.ServiceEntry: the node, the service, the node's and the service's checks."""
    return {
        "Node": node.json(),
        "Service": service_json(reg),
        "Checks": [node.serf_check()] + [check_json(node, reg, s) for s in reg.checks],
    }


def entry_passing(reg: RegisteredInstance) -> bool:
    """`?passing`: every check passing (warning is not passing; serfHealth always is)."""
    return all(s.status == STATUS_PASSING for s in reg.checks)


def catalog_entry(node: ConsulNode, reg: RegisteredInstance) -> dict[str, Any]:
    """api.CatalogService."""
    inst = reg.instance
    return {
        "ID": node.id,
        "Node": node.name,
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": node.tagged_addresses(),
        "NodeMeta": {"consul-network-segment": ""},
        "ServiceKind": "",
        "ServiceID": inst.id,
        "ServiceName": inst.name,
        "ServiceTags": list(inst.tags),
        "ServiceAddress": inst.address,
        "ServiceTaggedAddresses": _service_tagged(reg),
        "ServiceWeights": dict(WEIGHTS),
        "ServiceMeta": _meta(reg),
        "ServicePort": inst.port,
        "ServiceSocketPath": "",
        "ServiceEnableTagOverride": False,
        "ServiceProxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "ServiceConnect": {},
        "ServicePeerName": "",
        "CreateIndex": reg.create_index,
        "ModifyIndex": reg.modify_index,
    }


def agent_service_json(node: ConsulNode, reg: RegisteredInstance) -> dict[str, Any]:
    """api.AgentService as listed by /v1/agent/services."""
    inst = reg.instance
    return {
        "ID": inst.id,
        "Service": inst.name,
        "Tags": list(inst.tags),
        "Meta": _meta(reg),
        "Port": inst.port,
        "Address": inst.address,
        "TaggedAddresses": _service_tagged(reg),
        "Weights": dict(WEIGHTS),
        "EnableTagOverride": False,
        "Datacenter": node.datacenter,
    }
