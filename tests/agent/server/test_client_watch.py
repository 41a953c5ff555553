"""The node's watch (schema.WATCH_NODE_ALLOCS, NodeRPC.watch_client_allocs): a node's
watch index moves exactly when an allocation of the node is added, removed or changed in
what its client acts on, never for the client's own status updates; the client's watch
loop uses it, so its status updates no longer wake it. Also: `frozen.replace`, the client
update path's partial freeze."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from agent.server.sched_harness import NODE_ID, Harness, service_job

from nomadpaas.agent.client.client import Client, ClientConfig, WatchingServerRPC
from nomadpaas.agent.server.node_endpoint import NodeRPC
from nomadpaas.agent.server.state.frozen import FrozenDict, freeze, replace
from nomadpaas.agent.server.state.schema import ALLOCS, WATCH_NODE_ALLOCS
from nomadpaas.agent.server.state.state_store import Snapshot, StateStore, Txn

NODES = ("n1", "n2", "n3")
WAIT_S = 30.0


def _projection(snap: Snapshot, node: str) -> dict[str, tuple[Any, ...]]:
    """What the node's client acts on, per allocation (client.py `_change_key`)."""
    out = {}
    for row in snap.list(ALLOCS):
        if row.get("NodeID") != node:
            continue
        job = row.get("Job") or {}
        out[row["ID"]] = (
            row.get("AllocModifyIndex"),
            row.get("DesiredStatus"),
            row.get("DesiredTransition"),
            job.get("JobModifyIndex"),
            job.get("Version"),
        )
    return out


def _write(rng: random.Random, txn: Txn, ids: list[str]) -> None:
    for _ in range(rng.randint(1, 4)):
        alloc_id = rng.choice(ids)
        row = txn.get(ALLOCS, (alloc_id,))
        roll = rng.random()
        if row is None or roll < 0.1:
            txn.put(ALLOCS, (alloc_id,), {
                "ID": alloc_id, "NodeID": rng.choice(NODES), "AllocModifyIndex": txn.index,
                "DesiredStatus": "run", "DesiredTransition": {}, "ClientStatus": "pending",
                "Job": {"JobModifyIndex": 1, "Version": 0},
            })  # fmt: skip
        elif roll < 0.2:
            txn.delete(ALLOCS, (alloc_id,))
        elif roll < 0.6:  # the client's own update: TaskStates, ClientStatus
            status = rng.choice(["pending", "running", "complete"])
            txn.put(ALLOCS, (alloc_id,), replace(row, {
                "ClientStatus": status, "TaskStates": {"t": {"State": status}},
                "ModifyIndex": txn.index,
            }))  # fmt: skip
        else:
            field, value = rng.choice([
                ("DesiredStatus", "stop"),
                ("AllocModifyIndex", txn.index),
                ("DesiredTransition", {"Migrate": True}),
                ("Job", {"JobModifyIndex": txn.index, "Version": 1}),
                ("NodeID", rng.choice(NODES)),
            ])  # fmt: skip
            txn.put(ALLOCS, (alloc_id,), replace(row, {field: value}))


def test_watch_index_moves_exactly_when_the_nodes_projection_changes(tmp_path: Path) -> None:
    rng = random.Random(3)
    ids = [f"a{i}" for i in range(12)]
    store = StateStore(tmp_path / "state.db", (ALLOCS,))
    expected = dict.fromkeys(NODES, 0)
    client_only = 0
    try:
        for _ in range(200):
            before = store.snapshot()
            _, index = store.write("Test", lambda txn: _write(rng, txn, ids))
            after = store.snapshot()
            moved = False
            for node in NODES:
                if _projection(before, node) != _projection(after, node):
                    expected[node] = index
                    moved = True
                assert after.watch_index(ALLOCS, WATCH_NODE_ALLOCS, (node,)) == expected[node]
            client_only += not moved and index != before.index
        assert client_only > 10  # client updates happened, and moved nothing
        latest = store.latest_index
    finally:
        store.close()
    reopened = StateStore(tmp_path / "state.db", (ALLOCS,))
    try:
        snap = reopened.snapshot()
        for node in NODES:  # after a restart nothing older than the latest index is known
            present = bool(_projection(snap, node))
            assert snap.watch_index(ALLOCS, WATCH_NODE_ALLOCS, (node,)) == (
                latest if present else 0
            )
    finally:
        reopened.close()


def test_watch_client_allocs_sleeps_through_client_updates(h: Harness) -> None:
    h.register(service_job(count=2))
    allocs, index = h.node_rpc.watch_client_allocs(NODE_ID, 0, 1)
    assert len(allocs) == 2 and index > 0
    results: list[tuple[list[Any], int]] = []
    waiter = threading.Thread(
        target=lambda: results.append(h.node_rpc.watch_client_allocs(NODE_ID, index, WAIT_S))
    )
    waiter.start()
    try:
        for status in ("pending", "running"):
            h.node_rpc.update_allocs([{"ID": a["ID"], "ClientStatus": status} for a in allocs])
        time.sleep(0.3)
        assert waiter.is_alive()  # the client's own updates woke nothing
        started = time.monotonic()
        h.node_rpc.stop_alloc(allocs[0]["ID"])  # the server changes one: wake up
        waiter.join(WAIT_S)
        assert not waiter.is_alive() and time.monotonic() - started < WAIT_S / 2
    finally:
        waiter.join(WAIT_S)
    woke, new_index = results[0]
    assert new_index > index
    by_id = {a["ID"]: a for a in woke}
    assert by_id[allocs[0]["ID"]]["DesiredStatus"] == "stop"
    assert by_id[allocs[1]["ID"]]["ClientStatus"] == "running"
    # Timing out returns the current list and the unchanged index.
    same, same_index = h.node_rpc.watch_client_allocs(NODE_ID, new_index, 0.2)
    assert same_index == new_index and len(same) == 2


def test_get_client_allocs_still_wakes_on_client_updates(h: Harness) -> None:
    h.register(service_job(count=1))
    allocs, index = h.node_rpc.get_client_allocs(NODE_ID, 0, 1)
    h.node_rpc.update_allocs([{"ID": allocs[0]["ID"], "ClientStatus": "running"}])
    started = time.monotonic()
    moved, new_index = h.node_rpc.get_client_allocs(NODE_ID, index, WAIT_S)
    assert new_index > index and time.monotonic() - started < WAIT_S / 2
    assert moved[0]["ClientStatus"] == "running"


def test_client_update_shares_the_unchanged_parts_of_the_row(h: Harness) -> None:
    h.register(service_job(count=1))
    (old,) = h.allocs()
    states = {"srv": {"State": "running", "Events": [{"Type": "Started", "Details": {}}]}}
    h.node_rpc.update_allocs([{"ID": old["ID"], "ClientStatus": "running", "TaskStates": states}])
    (new,) = h.allocs()
    assert new["Job"] is old["Job"] and new["AllocatedResources"] is old["AllocatedResources"]
    assert new["TaskStates"] == freeze(states) and isinstance(new["TaskStates"], FrozenDict)
    with pytest.raises(TypeError):
        new["TaskStates"]["srv"]["Events"][0]["Details"]["x"] = "y"
    assert new["ModifyIndex"] > old["ModifyIndex"]
    assert new["AllocModifyIndex"] == old["AllocModifyIndex"]


def test_replace_freezes_only_the_changes() -> None:
    row = freeze({"ID": "a", "Job": {"ID": "web"}, "TaskStates": None, "N": 1})
    changed = replace(row, {"TaskStates": {"t": [{"x": 1}]}, "N": 2, "New": [1, "b"]})
    assert changed["Job"] is row["Job"] and row["N"] == 1 and row["TaskStates"] is None
    assert changed == {"ID": "a", "Job": {"ID": "web"}, "TaskStates": {"t": ({"x": 1},)},
                       "N": 2, "New": (1, "b")}  # fmt: skip
    assert type(changed) is FrozenDict and type(changed["TaskStates"]["t"][0]) is FrozenDict
    assert list(changed) == ["ID", "Job", "TaskStates", "N", "New"]  # key order kept


class RecordingRPC:
    """The server's NodeRPC, counting which query the client's watch loop calls."""

    def __init__(self, rpc: NodeRPC) -> None:
        self.rpc = rpc
        self.watch_calls = 0
        self.get_calls = 0
        self.update_calls = 0

    def get_client_allocs(
        self, node_id: str, min_index: int, timeout_s: float
    ) -> tuple[list[Any], int]:
        self.get_calls += 1
        return self.rpc.get_client_allocs(node_id, min_index, timeout_s)

    def watch_client_allocs(
        self, node_id: str, min_index: int, timeout_s: float
    ) -> tuple[list[Any], int]:
        self.watch_calls += 1
        return self.rpc.watch_client_allocs(node_id, min_index, timeout_s)

    def update_allocs(self, updates: list[dict[str, Any]]) -> int:
        self.update_calls += 1
        return self.rpc.update_allocs(updates)


def _wait(pred: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_client_watch_loop_sleeps_through_its_own_updates(h: Harness, tmp_path: Path) -> None:
    job = service_job(count=2, Update={"MaxParallel": 0})  # no deployment, no health
    job["TaskGroups"][0]["Networks"] = []
    h.register(job)
    rpc = RecordingRPC(h.node_rpc)
    assert isinstance(rpc, WatchingServerRPC)
    node = {"ID": NODE_ID, "Name": "local", "Datacenter": "dc1", "Attributes": {}}
    client = Client(ClientConfig(tmp_path, node, watch_wait_s=WAIT_S * 2), rpc)
    client.start()

    def statuses() -> set[str]:
        return {a["ClientStatus"] for a in h.allocs()}

    try:
        _wait(lambda: statuses() == {"running"}, "both allocations running")
        _wait(lambda: rpc.update_calls >= 1 and rpc.watch_calls >= 2, "the watch to park")
        # One fetch found the two allocations, the next sleeps: none of the client's
        # status updates woke it.
        assert (rpc.watch_calls, rpc.get_calls) == (2, 0)
        h.jobs.deregister("default", "web", purge=False)
        h.drain()
        _wait(lambda: statuses() == {"complete"}, "both allocations stopped")
        assert rpc.watch_calls >= 3
    finally:
        client.destroy_all()
        client.shutdown()
