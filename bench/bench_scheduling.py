"""Benchmark: scheduling throughput of the embedded server, in memory (no client, no
HTTP): register N service jobs of C allocs each, drain every evaluation through the
generic scheduler and plan apply, then re-register each with a destructive change.

Prints jobs/s and evals/s for both rounds, so the cost of the full-table scans behind
job summaries and statuses shows up as N grows.

    .venv/bin/python bench/bench_scheduling.py             # N = 200, C = 3
    .venv/bin/python bench/bench_scheduling.py --n 500 --count 2
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

from nomadpaas.agent.server.server import Server
from nomadpaas.agent.server.state.schema import ALLOCS, NODES
from nomadpaas.agent.server.state.state_store import StateStore, Txn
from nomadpaas.agent.server.worker import Worker
from nomadpaas.agent.structs.job import canonicalize


def _job(i: int, count: int, arg: str) -> dict[str, Any]:
    return canonicalize(
        {
            "ID": f"job-{i}",
            "Update": {"MaxParallel": 0},
            "TaskGroups": [
                {
                    "Name": "app",
                    "Count": count,
                    "Networks": [{"DynamicPorts": [{"Label": "http"}]}],
                    "Tasks": [
                        {
                            "Name": "srv",
                            "Driver": "raw_exec",
                            "Config": {"command": "/bin/sleep", "args": [arg]},
                        }
                    ],
                }
            ],
        }
    )


def _drain(server: Server, worker: Worker) -> int:
    ran = 0
    while (item := server.broker.dequeue(0)) is not None:
        worker.process(item[0])
        server.broker.ack(item[0]["ID"], item[1])
        ran += 1
    return ran


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200, help="jobs")
    parser.add_argument("--count", type=int, default=3, help="allocs per job")
    args = parser.parse_args()
    store = StateStore(None)

    def put_node(txn: Txn) -> None:
        node = {
            "ID": "n1", "Name": "bench", "Datacenter": "dc1", "Status": "ready",
            "SchedulingEligibility": "eligible",
            "Drivers": {"raw_exec": {"Detected": True, "Healthy": True}},
        }  # fmt: skip
        txn.put(NODES, ("n1",), node)

    store.write("NodeRegisterRequestType", put_node)
    server = Server(store, num_workers=0)
    server.start()
    worker = Worker(store, server.broker)
    try:
        for round_name, arg in (("place", "100"), ("replace", "200")):
            started = time.perf_counter()
            for i in range(args.n):
                server.jobs.register(copy.deepcopy(_job(i, args.count, arg)))
            registered = time.perf_counter()
            evals = _drain(server, worker)
            done = time.perf_counter()
            print(
                f"{round_name:8s} {args.n} jobs x {args.count}: register "
                f"{args.n / (registered - started):7.1f} jobs/s, schedule "
                f"{evals / (done - registered):7.1f} evals/s, "
                f"{store.snapshot().count(ALLOCS)} allocs in state"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
