"""The resources a placement holds, in Nomad's shapes: AllocatedResources (tasks,
lifecycles, shared disk/networks/ports) plus the deprecated Resources, SharedResources
and TaskResources; mirrors what scheduler/rank.go and generic_sched.go fill in.
"""

from __future__ import annotations

from typing import Any

Row = Any


def set_resources(
    alloc: dict[str, Any],
    group: Row,
    networks: list[dict[str, Any]] | None,
    ports: list[dict[str, Any]] | None,
) -> None:
    """AllocatedResources (and the deprecated Resources/TaskResources) in Nomad's shape."""
    disk = int((group.get("EphemeralDisk") or {}).get("SizeMB") or 0)
    tasks: dict[str, Any] = {}
    lifecycles: dict[str, Any] = {}
    task_resources: dict[str, Any] = {}
    cpu_total = mem_total = 0
    for task in group.get("Tasks") or ():
        r = task.get("Resources") or {}
        cpu, mem = int(r.get("CPU") or 0), int(r.get("MemoryMB") or 0)
        mem_max = int(r.get("MemoryMaxMB") or 0)
        cpu_total += cpu
        mem_total += mem
        tasks[task["Name"]] = {
            "Cpu": {"CpuShares": cpu, "ReservedCores": None},
            "Memory": {"MemoryMB": mem, "MemoryMaxMB": mem_max},
            "Networks": None,
            "Devices": None,
        }
        lifecycles[task["Name"]] = task.get("Lifecycle")
        task_resources[task["Name"]] = _legacy(cpu, mem, mem_max, 0, None)
    alloc["AllocatedResources"] = {
        "Tasks": tasks,
        "TaskLifecycles": lifecycles,
        "Shared": {"Networks": networks, "DiskMB": disk, "Ports": ports},
    }
    alloc["Resources"] = _legacy(cpu_total, mem_total, 0, disk, networks)
    alloc["SharedResources"] = _legacy(0, 0, 0, disk, networks)
    alloc["TaskResources"] = task_resources


def _legacy(
    cpu: int, mem: int, mem_max: int, disk: int, networks: list[dict[str, Any]] | None
) -> dict[str, Any]:
    return {
        "CPU": cpu,
        "Cores": 0,
        "MemoryMB": mem,
        "MemoryMaxMB": mem_max,
        "DiskMB": disk,
        "IOPS": 0,
        "Networks": networks,
        "Devices": None,
        "NUMA": None,
    }
