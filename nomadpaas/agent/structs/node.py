"""The one client node: fingerprint → Node, and its NodeListStub view; mirrors
nomad/structs/node.go + client/fingerprint (in miniature).
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NODE_STATUS_READY = "ready"
NODE_SCHEDULING_ELIGIBLE = "eligible"
DEFAULT_NODE_POOL = "default"
DEFAULT_CPU_MHZ = 1000  # when /proc/cpuinfo does not say
MIN_DYNAMIC_PORT = 20000  # Nomad's default dynamic port range
MAX_DYNAMIC_PORT = 32000

STUB_FIELDS = (
    "Address", "ID", "Datacenter", "Name", "NodeClass", "NodePool", "Version", "Drain",
    "SchedulingEligibility", "Status", "StatusDescription", "Drivers", "HostVolumes",
    "LastDrain", "CreateIndex", "ModifyIndex",
)  # fmt: skip


def _cpu_mhz() -> int:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return int(float(line.split(":", 1)[1]))
    except (OSError, ValueError):
        pass
    return DEFAULT_CPU_MHZ


def _memory_mb() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024))
    except (ValueError, OSError, AttributeError):
        return 1024


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fingerprint_node(
    node_id: str,
    secret_id: str,
    *,
    datacenter: str,
    http_addr: str,
    data_dir: Path,
    nomad_version: str,
) -> dict[str, Any]:
    """The full Node document for this machine (CreateIndex/ModifyIndex set by the store)."""
    name = socket.gethostname()
    cores = os.cpu_count() or 1
    mhz = _cpu_mhz()
    memory_mb = _memory_mb()
    disk_mb = shutil.disk_usage(data_dir).free // (1024 * 1024)
    now = datetime.now(UTC)
    address = http_addr.rsplit(":", 1)[0]
    attributes = {
        "kernel.name": platform.system().lower(),
        "kernel.version": platform.release(),
        "os.name": platform.system().lower(),
        "cpu.arch": platform.machine(),
        "cpu.numcores": str(cores),
        "cpu.frequency": str(mhz),
        "cpu.totalcompute": str(cores * mhz),
        "memory.totalbytes": str(memory_mb * 1024 * 1024),
        "unique.hostname": name,
        "unique.network.ip-address": address,
        "nomad.version": nomad_version,
        "nomad.advertise.address": http_addr,
        "driver.raw_exec": "1",
    }
    return {
        "ID": node_id,
        "SecretID": secret_id,
        "Datacenter": datacenter,
        "Name": name,
        "HTTPAddr": http_addr,
        "TLSEnabled": False,
        "Attributes": attributes,
        "NodeResources": {
            "Cpu": {"CpuShares": cores * mhz, "TotalCpuCores": cores, "ReservableCpuCores": None},
            "Memory": {"MemoryMB": memory_mb},
            "Disk": {"DiskMB": disk_mb},
            "Networks": None,
            "NodeNetworks": None,
            "Devices": None,
            "MinDynamicPort": MIN_DYNAMIC_PORT,
            "MaxDynamicPort": MAX_DYNAMIC_PORT,
        },
        "ReservedResources": {
            "Cpu": {"CpuShares": 0, "ReservedCpuCores": None},
            "Memory": {"MemoryMB": 0},
            "Disk": {"DiskMB": 0},
            "Networks": {"ReservedHostPorts": ""},
        },
        "Links": None,
        "Meta": {},
        "NodeClass": "",
        "NodePool": DEFAULT_NODE_POOL,
        "ComputedClass": "",
        "Drain": False,
        "DrainStrategy": None,
        "SchedulingEligibility": NODE_SCHEDULING_ELIGIBLE,
        "Status": NODE_STATUS_READY,
        "StatusDescription": "",
        "StatusUpdatedAt": int(now.timestamp()),
        "Events": [
            {
                "Message": "Node registered",
                "Subsystem": "Cluster",
                "Details": None,
                "Timestamp": _rfc3339(now),
                "CreateIndex": 0,
            }
        ],
        "Drivers": {
            "raw_exec": {
                "Attributes": {"driver.raw_exec": "true"},
                "Detected": True,
                "Healthy": True,
                "HealthDescription": "Healthy",
                "UpdateTime": _rfc3339(now),
            }
        },
        "HostVolumes": None,
        "HostNetworks": None,
        "CSIControllerPlugins": None,
        "CSINodePlugins": None,
        "LastDrain": None,
        "Version": nomad_version,
        "Address": address,
    }


def node_stub(node: Mapping[str, Any], resources: bool = False) -> dict[str, Any]:
    """The NodeListStub `/v1/nodes` lists; Attributes and resources only on request."""
    out = {k: node.get(k) for k in STUB_FIELDS}
    if resources:
        out["Attributes"] = node.get("Attributes")
        out["NodeResources"] = node.get("NodeResources")
        out["ReservedResources"] = node.get("ReservedResources")
    return out
