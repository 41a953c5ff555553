"""Host ports for a task group's networks on this node: reserved ports as given,
dynamic ports picked free; mirrors the port parts of nomad/structs/network.go
(NetworkIndex.AssignPorts).

A dynamic port is free when no live allocation on the node holds it and it can be bound
on the host right now (another program may be listening there). Picking is random inside
Nomad's default range, so two schedulers rarely race for the same port; plan apply still
rejects a plan whose ports collide with the state.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable
from typing import Any

MIN_DYNAMIC_PORT = 20000  # client.min_dynamic_port default (inclusive)
MAX_DYNAMIC_PORT = 32000  # client.max_dynamic_port default (inclusive)
DYNAMIC_PORT_ATTEMPTS = 100  # random probes before the node counts as exhausted


class PortsExhausted(Exception):
    """No port could be given; the text is the DimensionExhausted key Nomad reports."""


def ports_in_use(allocs: Iterable[Any]) -> set[int]:
    """Host ports held by the given (live) allocations."""
    used: set[int] = set()
    for alloc in allocs:
        shared = (alloc.get("AllocatedResources") or {}).get("Shared") or {}
        for port in shared.get("Ports") or ():
            used.add(int(port["Value"]))
    return used


def _bindable(host_ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host_ip, port))
        except OSError:
            return False
    return True


def assign_ports(
    networks: list[Any] | None, used: set[int], host_ip: str, rng: random.Random | None = None
) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
    """(allocated Networks, AllocatedPorts) for a group's networks; adds the ports to `used`.

    Raises PortsExhausted (reserved port taken, or no free dynamic port found).
    """
    if not networks:
        return None, None
    rng = rng or random.Random()
    out_networks: list[dict[str, Any]] = []
    out_ports: list[dict[str, Any]] = []
    for net in networks:
        allocated = {k: (list(v) if isinstance(v, tuple) else v) for k, v in net.items()}
        allocated["IP"] = host_ip
        reserved: list[dict[str, Any]] = []
        for port in net.get("ReservedPorts") or ():
            value = int(port["Value"])
            if value in used:
                raise PortsExhausted(f"network: reserved port collision {port['Label']}={value}")
            used.add(value)
            reserved.append(_mapping(port, value))
        dynamic: list[dict[str, Any]] = []
        for port in net.get("DynamicPorts") or ():
            value = _pick(used, host_ip, rng)
            used.add(value)
            dynamic.append(_mapping(port, value))
        allocated["ReservedPorts"] = [dict(p) for p in reserved] or None
        allocated["DynamicPorts"] = [dict(p) for p in dynamic] or None
        out_networks.append(allocated)
        out_ports.extend(
            {"Label": p["Label"], "Value": p["Value"], "To": p["To"], "HostIP": host_ip}
            for p in (*reserved, *dynamic)
        )
    return out_networks, out_ports or None


def _mapping(port: Any, value: int) -> dict[str, Any]:
    to = int(port.get("To") or 0)
    return {
        "Label": port.get("Label", ""),
        "Value": value,
        "To": value if to == -1 else to,  # -1 means "same as the host port"
        "HostNetwork": port.get("HostNetwork") or "default",
    }


def _pick(used: set[int], host_ip: str, rng: random.Random) -> int:
    for _ in range(DYNAMIC_PORT_ATTEMPTS):
        port = rng.randint(MIN_DYNAMIC_PORT, MAX_DYNAMIC_PORT)
        if port not in used and _bindable(host_ip, port):
            return port
    raise PortsExhausted("network: dynamic port selection failed")
