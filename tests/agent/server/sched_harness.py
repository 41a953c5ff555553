"""An in-memory server for scheduling tests: state store, Jobs RPC, broker and a worker
driven by hand (`drain()`), so every test is deterministic."""

from __future__ import annotations

import copy
from typing import Any

from nomadpaas.agent.server.server import Server
from nomadpaas.agent.server.state.schema import ALLOCS, EVALS, NODES
from nomadpaas.agent.server.state.state_store import Row, StateStore, Txn
from nomadpaas.agent.server.worker import Worker
from nomadpaas.agent.structs.job import canonicalize

NODE_ID = "node-1"


def node() -> dict[str, Any]:
    return {
        "ID": NODE_ID, "Name": "local", "Datacenter": "dc1", "Status": "ready",
        "SchedulingEligibility": "eligible",
        "Drivers": {"raw_exec": {"Detected": True, "Healthy": True}},
    }  # fmt: skip


def service_job(
    job_id: str = "web", count: int = 2, *, args: list[str] | None = None, **over: Any
) -> dict[str, Any]:
    job: dict[str, Any] = {
        "ID": job_id,
        "Type": "service",
        "TaskGroups": [
            {
                "Name": "app",
                "Count": count,
                "Networks": [{"DynamicPorts": [{"Label": "http"}]}],
                "Tasks": [
                    {
                        "Name": "srv",
                        "Driver": "raw_exec",
                        "Config": {"command": "/bin/sleep", "args": args or ["100"]},
                    }
                ],
            }
        ],
    }
    job.update(over)
    return canonicalize(job)


class Harness:
    def __init__(self) -> None:
        self.store = StateStore(None)
        self.store.write("NodeRegisterRequestType", self._put_node)
        self.server = Server(self.store, num_workers=0, gc=False)
        self.server.start()
        self.worker = Worker(self.store, self.server.broker)
        self.jobs = self.server.jobs
        self.node_rpc = self.server.node_rpc

    def _put_node(self, txn: Txn) -> None:
        txn.put(NODES, (NODE_ID,), {**node(), "CreateIndex": txn.index, "ModifyIndex": txn.index})

    def register(self, job: dict[str, Any], **kw: Any) -> dict[str, Any]:
        out = self.jobs.register(copy.deepcopy(job), **kw)
        self.drain()
        return out

    def drain(self, limit: int = 50) -> int:
        """Process every ready eval; returns how many ran."""
        for ran in range(limit):
            item = self.server.broker.dequeue(0)
            if item is None:
                return ran
            self.worker.process(item[0])
            self.server.broker.ack(item[0]["ID"], item[1])
        raise AssertionError("evaluations kept coming")

    def eval(self, eval_id: str) -> Row:
        row = self.store.snapshot().get(EVALS, (eval_id,))
        assert row is not None
        return row

    def allocs(self, job_id: str = "web", live: bool = False) -> list[Row]:
        rows = [a for a in self.store.snapshot().list(ALLOCS) if a["JobID"] == job_id]
        if live:
            rows = [a for a in rows if a["DesiredStatus"] == "run"]
        return sorted(rows, key=lambda a: (a["Name"], a["CreateIndex"]))

    def evals(self, job_id: str = "web") -> list[Row]:
        rows = [e for e in self.store.snapshot().list(EVALS) if e["JobID"] == job_id]
        return sorted(rows, key=lambda e: e["CreateIndex"])
