"""Helpers for client/alloc runner/task runner tests: an in-memory ServerRPC, job and
allocation factories, pinned restart jitter, polling. The driver and logmon are real."""

from __future__ import annotations

import base64
import copy
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from nomadpaas.agent.client.allocrunner.taskrunner.restarts import RestartTracker
from nomadpaas.agent.structs.alloc import TASK_STATE_DEAD, new_allocation
from nomadpaas.agent.structs.duration import NS_PER_MIN, NS_PER_MS
from nomadpaas.agent.structs.job import canonicalize

PY = sys.executable
WAIT_S = 30.0  # generous: a loaded 2-core machine
NODE: dict[str, Any] = {
    "ID": "0f6a3c1e-1111-2222-3333-444455556666",
    "Name": "test-node",
    "Datacenter": "dc1",
    "Attributes": {"nomad.region": "global"},
}
FAST_RESTARTS = {
    "Attempts": 2,
    "Interval": 30 * NS_PER_MIN,
    "Delay": 50 * NS_PER_MS,
    "Mode": "fail",
}


def py_task(name: str, code: str, **extra: Any) -> dict[str, Any]:
    """A raw_exec task running `python -c code`."""
    return {
        "Name": name,
        "Driver": "raw_exec",
        "Config": {"command": PY, "args": ["-u", "-c", code]},
        **extra,
    }


def make_alloc(
    tasks: list[dict[str, Any]],
    *,
    job_type: str = "service",
    restart: dict[str, Any] | None = None,
    group_extra: dict[str, Any] | None = None,
    job_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    group: dict[str, Any] = {"Name": "g", "Tasks": tasks, "RestartPolicy": restart or FAST_RESTARTS}
    group.update(group_extra or {})
    job = canonicalize({"ID": "web", "Type": job_type, "TaskGroups": [group], **(job_extra or {})})
    return new_allocation(
        alloc_id=str(uuid.uuid4()), eval_id=str(uuid.uuid4()), job=job, group="g",
        name="web.g[0]", node_id=NODE["ID"], node_name=NODE["Name"], now_ns=time.time_ns(),
    )  # fmt: skip


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class _ZeroJitter:
    def int63n(self, n: int) -> int:
        return 0


def pinned_tracker(alloc: dict[str, Any], task: dict[str, Any]) -> RestartTracker:
    return RestartTracker(
        policy=dict(task.get("RestartPolicy") or {}),
        job_type=str(alloc["Job"]["Type"]),
        start_ns=time.time_ns(),
        lifecycle=task.get("Lifecycle"),
        rng=_ZeroJitter(),
    )


class FakeRPC:
    """An in-memory server: allocations by ID, a raft-like index, recorded updates."""

    def __init__(self) -> None:
        self.allocs: dict[str, dict[str, Any]] = {}
        self.index = 1
        self.updates: list[dict[str, Any]] = []
        self.update_calls = 0
        self._cond = threading.Condition()

    def put(self, alloc: dict[str, Any]) -> None:
        with self._cond:
            self.index += 1
            alloc = copy.deepcopy(alloc)
            alloc["AllocModifyIndex"] = alloc["ModifyIndex"] = self.index
            self.allocs[alloc["ID"]] = alloc
            self._cond.notify_all()

    def stop(self, alloc_id: str) -> None:
        with self._cond:
            alloc = copy.deepcopy(self.allocs[alloc_id])
        alloc["DesiredStatus"] = "stop"
        self.put(alloc)

    def delete(self, alloc_id: str) -> None:
        with self._cond:
            self.index += 1
            self.allocs.pop(alloc_id, None)
            self._cond.notify_all()

    def get(self, alloc_id: str) -> dict[str, Any]:
        with self._cond:
            return copy.deepcopy(self.allocs[alloc_id])

    def get_client_allocs(
        self, node_id: str, min_index: int, timeout_s: float
    ) -> tuple[list[dict[str, Any]], int]:
        with self._cond:
            self._cond.wait_for(lambda: self.index > min_index, min(timeout_s, 1.0))
            allocs = [copy.deepcopy(a) for a in self.allocs.values() if a["NodeID"] == node_id]
            return allocs, self.index

    def update_allocs(self, updates: list[dict[str, Any]]) -> int:
        with self._cond:
            self.update_calls += 1
            self.index += 1
            for u in updates:
                self.updates.append(copy.deepcopy(u))
                alloc = self.allocs.get(u["ID"])
                if alloc is not None:
                    alloc.update(copy.deepcopy(u))
                    alloc["ModifyIndex"] = self.index
            self._cond.notify_all()
            return self.index


def wait_for(
    pred: Callable[[], object], timeout_s: float = WAIT_S, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def event_types(state: dict[str, Any]) -> list[str]:
    return [e["Type"] for e in state.get("Events") or []]


def all_dead(states: dict[str, Any]) -> bool:
    return bool(states) and all(s["State"] == TASK_STATE_DEAD for s in states.values())


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    return raw[raw.rindex(b")") + 2 :].split()[0] not in (b"Z", b"X")


def read_logs(alloc_root: str, task: str, stream: str = "stdout") -> str:
    log_dir = os.path.join(alloc_root, "alloc", "logs")
    names = sorted(
        (n for n in os.listdir(log_dir) if n.startswith(f"{task}.{stream}.")),
        key=lambda n: int(n.rsplit(".", 1)[1]),
    ) if os.path.isdir(log_dir) else []  # fmt: skip
    return "".join(open(os.path.join(log_dir, n), errors="replace").read() for n in names)
