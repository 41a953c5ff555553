"""Benchmark: N allocations (one raw_exec `sleep` task each) through the client's runners.

Prints the time until every allocation reports `running` to the server, the number of
`update_allocs` calls that took (batching), the agent's thread count and RSS, and the
time to stop them all. Uses an in-memory server; cleans up everything it started.

    .venv/bin/python bench/bench_allocs.py            # N = 100
    .venv/bin/python bench/bench_allocs.py --n 20
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from benchsupport import status_kib

from nomadpaas.agent.client.client import Client, ClientConfig
from nomadpaas.agent.structs.alloc import new_allocation
from nomadpaas.agent.structs.job import canonicalize

NODE = {"ID": str(uuid.uuid4()), "Name": "bench", "Datacenter": "dc1", "Attributes": {}}
TIMEOUT_S = 300.0


class MemoryRPC:
    """The ServerRPC protocol over a dict, with a blocking index."""

    def __init__(self) -> None:
        self.allocs: dict[str, dict[str, Any]] = {}
        self.index = 1
        self.update_calls = 0
        self.cond = threading.Condition()

    def put(self, alloc: dict[str, Any]) -> None:
        with self.cond:
            self.index += 1
            alloc["AllocModifyIndex"] = self.index
            self.allocs[alloc["ID"]] = alloc
            self.cond.notify_all()

    def get_client_allocs(
        self, node_id: str, min_index: int, timeout_s: float
    ) -> tuple[list[dict[str, Any]], int]:
        with self.cond:
            self.cond.wait_for(lambda: self.index > min_index, min(timeout_s, 1.0))
            return [copy.deepcopy(a) for a in self.allocs.values()], self.index

    def update_allocs(self, updates: list[dict[str, Any]]) -> int:
        with self.cond:
            self.update_calls += 1
            for u in updates:
                if u["ID"] in self.allocs:
                    self.allocs[u["ID"]]["ClientStatus"] = u["ClientStatus"]
            return self.index

    def count(self, status: str) -> int:
        with self.cond:
            return sum(1 for a in self.allocs.values() if a.get("ClientStatus") == status)


def make_alloc(i: int) -> dict[str, Any]:
    task = {"Name": "t", "Driver": "raw_exec", "Config": {"command": "sleep", "args": ["600"]}}
    job = canonicalize({"ID": f"bench-{i}", "TaskGroups": [{"Name": "g", "Tasks": [task]}]})
    return new_allocation(
        alloc_id=str(uuid.uuid4()), eval_id=str(uuid.uuid4()), job=job, group="g",
        name=f"bench-{i}.g[0]", node_id=NODE["ID"], node_name="bench", now_ns=time.time_ns(),
    )  # fmt: skip


def wait(pred: Any, what: str) -> float:
    started = time.monotonic()
    while not pred():
        if time.monotonic() - started > TIMEOUT_S:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    n = parser.parse_args().n
    with tempfile.TemporaryDirectory(prefix="bench-allocs-") as tmp:
        rpc = MemoryRPC()
        client = Client(ClientConfig(Path(tmp), NODE), rpc)
        rss_before = status_kib(os.getpid(), "VmRSS")
        try:
            client.start()
            allocs = [make_alloc(i) for i in range(n)]
            for alloc in allocs:
                rpc.put(alloc)
            up = wait(lambda: rpc.count("running") == n, "all running")
            print(f"{n} allocs running in {up:.2f}s ({up / n * 1000:.1f} ms/alloc)")
            print(f"update_allocs calls: {rpc.update_calls}")
            grown = status_kib(os.getpid(), "VmRSS") - rss_before
            print(f"threads: {threading.active_count()}, RSS +{grown} KiB")
            for alloc in allocs:
                stopped = {**alloc, "DesiredStatus": "stop"}
                rpc.put(stopped)
            down = wait(lambda: rpc.count("complete") == n, "all stopped")
            print(f"{n} allocs stopped in {down:.2f}s")
        finally:
            client.destroy_all()
            client.shutdown()


if __name__ == "__main__":
    main()
