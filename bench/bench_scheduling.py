"""Benchmark: the embedded server's share of starting allocations, without HTTP or tasks.

Two modes, both in one process over the real server (state store, broker, worker,
scheduler, plan apply, node RPC):

- `jobs` (default): register N service jobs of C allocs each, in memory, drain every
  evaluation through the scheduler and plan apply, then re-register each with a
  destructive change; prints jobs/s and evals/s for both rounds.
- `node`: the server path of bench/bench_agent_allocs.py with a simulated node instead
  of the real client. The state store persists (fsync'd SQLite under --tmp), commits
  feed the event broker, and one service job of C allocs is registered; a *watch*
  thread long-polls `get_client_allocs` like the client, a *starter* "starts" each new
  alloc (--start-ms of sleep, no CPU) and queues its pending and running updates, a
  *sync* thread sends them through `update_allocs` batched as the client does, and the
  job summary is polled every 0.2 s until all C are running. Prints the wall time and
  the process CPU time (≈ the server's: the simulated node does almost nothing), and
  where the server's time went (schedule, plan apply, client updates).

    .venv/bin/python bench/bench_scheduling.py                 # jobs: N = 200, C = 3
    .venv/bin/python bench/bench_scheduling.py --n 500 --count 2
    .venv/bin/python bench/bench_scheduling.py --mode node --count 1000 --tmp /dev/shm
"""

from __future__ import annotations

import argparse
import copy
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from nomadpaas.agent.server import node_endpoint, worker
from nomadpaas.agent.server.server import Server
from nomadpaas.agent.server.state.events import attach
from nomadpaas.agent.server.state.schema import ALLOCS, JOB_SUMMARIES, NODES
from nomadpaas.agent.server.state.state_store import StateStore, Txn
from nomadpaas.agent.server.stream.event_broker import EventBroker
from nomadpaas.agent.server.worker import Worker
from nomadpaas.agent.structs.alloc import new_task_event
from nomadpaas.agent.structs.job import canonicalize

NODE_ID = "n1"
SUMMARY_POLL_S = 0.2  # as bench_agent_allocs.py polls /v1/job/:id/summary
SYNC_INTERVAL_S = 0.2  # the client's allocSync window (client/client.py)
URGENT_COALESCE_S = 0.02  # ... and how long an urgent (status change) update waits
TIMEOUT_S = 120.0


def _job(i: int, count: int, arg: str, ports: bool = True) -> dict[str, Any]:
    group: dict[str, Any] = {
        "Name": "app",
        "Count": count,
        "Tasks": [
            {
                "Name": "srv",
                "Driver": "raw_exec",
                "Config": {"command": "/bin/sleep", "args": [arg]},
                "Resources": {"CPU": 1, "MemoryMB": 10},
            }
        ],
    }
    if ports:
        group["Networks"] = [{"DynamicPorts": [{"Label": "http"}]}]
    return canonicalize({"ID": f"job-{i}", "Update": {"MaxParallel": 0}, "TaskGroups": [group]})


def _put_node(store: StateStore) -> None:
    def put_node(txn: Txn) -> None:
        node = {
            "ID": NODE_ID, "Name": "bench", "Datacenter": "dc1", "Status": "ready",
            "SchedulingEligibility": "eligible",
            "Drivers": {"raw_exec": {"Detected": True, "Healthy": True}},
        }  # fmt: skip
        txn.put(NODES, (NODE_ID,), node)

    store.write("NodeRegisterRequestType", put_node)


def _drain(server: Server, worker: Worker) -> int:
    ran = 0
    while (item := server.broker.dequeue(0)) is not None:
        worker.process(item[0])
        server.broker.ack(item[0]["ID"], item[1])
        ran += 1
    return ran


def run_jobs(n: int, count: int) -> None:
    store = StateStore(None)
    _put_node(store)
    server = Server(store, num_workers=0)
    server.start()
    w = Worker(store, server.broker)
    try:
        for round_name, arg in (("place", "100"), ("replace", "200")):
            started = time.perf_counter()
            for i in range(n):
                server.jobs.register(copy.deepcopy(_job(i, count, arg)))
            registered = time.perf_counter()
            evals = _drain(server, w)
            done = time.perf_counter()
            print(
                f"{round_name:8s} {n} jobs x {count}: register "
                f"{n / (registered - started):7.1f} jobs/s, schedule "
                f"{evals / (done - registered):7.1f} evals/s, "
                f"{store.snapshot().count(ALLOCS)} allocs in state"
            )
    finally:
        server.stop()


class _Timer:
    """Wall seconds spent inside some functions (summed over calls and threads)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        fn = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.spent[label] = self.spent.get(label, 0.0) + time.perf_counter() - t0
                    self.calls[label] = self.calls.get(label, 0) + 1

        setattr(owner, attr, timed)


class _Node:
    """The simulated client: watch, start, sync (see the module docstring)."""

    def __init__(self, rpc: node_endpoint.NodeRPC, start_s: float) -> None:
        self.rpc = rpc
        self.start_s = start_s
        self.stop = threading.Event()
        self.to_start: queue.Queue[str] = queue.Queue()
        self.pending: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.flushes = 0
        self.threads = [
            threading.Thread(target=f, daemon=True) for f in (self._watch, self._start, self._sync)
        ]

    def _watch(self) -> None:
        index, seen = 0, set()
        while not self.stop.is_set():
            allocs, index = self.rpc.get_client_allocs(NODE_ID, index, 1.0)
            for a in allocs:
                if a["ID"] not in seen:
                    seen.add(a["ID"])
                    self.to_start.put(a["ID"])

    def _start(self) -> None:
        while not self.stop.is_set():
            try:
                alloc_id = self.to_start.get(timeout=0.1)
            except queue.Empty:
                continue
            now = time.time_ns()
            received = [
                new_task_event("Received", now_ns=now),
                new_task_event("Task Setup", now_ns=now),
            ]
            self._queue(alloc_id, "pending", "No tasks have started", "pending", received, 0)
            time.sleep(self.start_s)
            started = [*received, new_task_event("Started", now_ns=time.time_ns())]
            self._queue(alloc_id, "running", "Tasks are running", "running", started, now)

    def _queue(
        self, alloc_id: str, status: str, desc: str, state: str, events: list[Any], at: int
    ) -> None:
        task = {
            "State": state, "Failed": False, "Restarts": 0, "LastRestart": "0001-01-01T00:00:00Z",
            "StartedAt": "0001-01-01T00:00:00Z" if not at else "2026-01-01T00:00:00Z",
            "FinishedAt": "0001-01-01T00:00:00Z", "Events": events, "Paused": "",
        }  # fmt: skip
        update = {
            "ID": alloc_id, "ClientStatus": status, "ClientDescription": desc,
            "TaskStates": {"srv": task},
        }  # fmt: skip
        with self.lock:
            self.pending[alloc_id] = update
        self.wake.set()  # every update here changes ClientStatus: urgent

    def _sync(self) -> None:
        while not self.stop.is_set():
            if self.wake.wait(SYNC_INTERVAL_S):
                time.sleep(URGENT_COALESCE_S)
            self.wake.clear()
            with self.lock:
                batch, self.pending = list(self.pending.values()), {}
            if batch:
                self.rpc.update_allocs(batch)
                self.flushes += 1


def run_node(count: int, tmp: str | None, start_ms: float, ports: bool) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-scheduling-", dir=tmp))
    timer = _Timer()
    timer.wrap(worker.Worker, "process", "eval (schedule + plan apply + eval update)")
    timer.wrap(worker, "apply_plan", "  plan apply")
    timer.wrap(node_endpoint.NodeRPC, "update_allocs", "client updates (update_allocs)")
    timer.wrap(
        node_endpoint.NodeRPC, "get_client_allocs", "client watch (get_client_allocs, parked too)"
    )
    store = StateStore(root / "state.db")
    broker = EventBroker()
    attach(store, broker)
    _put_node(store)
    server = Server(store)
    server.start()
    node = _Node(server.node_rpc, start_ms / 1000)
    for t in node.threads:
        t.start()
    try:
        index0 = store.latest_index
        cpu0, t0 = time.process_time(), time.perf_counter()
        server.jobs.register(_job(0, count, "300", ports))
        deadline = t0 + TIMEOUT_S
        while True:
            row = store.snapshot().get(JOB_SUMMARIES, ("default", "job-0"))
            if row is not None and row["Summary"]["app"]["Running"] == count:
                break
            if time.perf_counter() > deadline:
                raise SystemExit(f"timed out: {row}")
            time.sleep(SUMMARY_POLL_S)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        print(
            f"node: {count} allocs register → running in {wall:.2f}s, process CPU {cpu:.2f}s; "
            f"{store.latest_index - index0} commits, {node.flushes} update_allocs calls"
        )
        for label in sorted(timer.spent):
            print(f"  {label:45s} {timer.spent[label]:6.3f}s wall in {timer.calls[label]} calls")
    finally:
        node.stop.set()
        server.stop()
        store.close()
        for t in node.threads:
            t.join(5)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("jobs", "node"), default="jobs")
    parser.add_argument("--n", type=int, default=200, help="jobs (jobs mode)")
    parser.add_argument("--count", type=int, default=None, help="allocs per job (3; node: 1000)")
    parser.add_argument("--tmp", default=None, help="node mode: where state.db goes")
    parser.add_argument("--start-ms", type=float, default=1.0, help="node mode: per alloc start")
    parser.add_argument("--ports", action="store_true", help="node mode: a dynamic port each")
    args = parser.parse_args()
    if args.mode == "jobs":
        run_jobs(args.n, args.count or 3)
    else:
        run_node(args.count or 1000, args.tmp, args.start_ms, args.ports)


if __name__ == "__main__":
    main()
