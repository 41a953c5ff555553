"""The manager starts one watcher per active deployment and forgets finished ones; the
batcher writes one evaluation per job per window."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from agent.deployments.watcher_support import DEP_ID, FakeTriggers, alloc, deployment, job, load

from nomadpaas.agent.server.deploymentwatcher.batcher import EvalBatcher
from nomadpaas.agent.server.deploymentwatcher.deployments_watcher import DeploymentsWatcher
from nomadpaas.agent.server.state.schema import DEPLOYMENTS
from nomadpaas.agent.server.state.state_store import StateStore, Txn

WAIT_S = 5.0


def eventually(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_manager_watches_active_deployments_only() -> None:
    store = StateStore(None)
    manager = DeploymentsWatcher(store, FakeTriggers())
    manager.start()
    try:
        assert manager.watching() == []
        load(store, [job(0, "v0")], deployment(), [alloc("a1")])
        assert eventually(lambda: manager.watching() == [DEP_ID])

        def finish(txn: Txn) -> None:
            txn.put(DEPLOYMENTS, (DEP_ID,), {**deployment("successful"), "ModifyIndex": 99})

        store.write("Test", finish)
        assert eventually(lambda: manager.watching() == [])
    finally:
        manager.stop()
        store.close()


def test_batcher_writes_one_eval_per_job_per_window() -> None:
    writes: list[list[str]] = []
    done = threading.Event()

    def write(evals: Sequence[dict[str, Any]]) -> int:
        writes.append([e["ID"] for e in evals])
        done.set()
        return 1

    batcher = EvalBatcher(write, window_s=0.1)
    for i, job_id in enumerate(["web", "web", "api"]):
        batcher.add({"ID": f"e{i}", "Namespace": "default", "JobID": job_id})
    assert done.wait(WAIT_S)
    assert writes == [["e0", "e2"]]
    batcher.stop()
    batcher.add({"ID": "late", "Namespace": "default", "JobID": "web"})
    time.sleep(0.2)
    assert writes == [["e0", "e2"]]  # nothing after stop


def test_manager_does_not_spin_once_blocking_queries_are_interrupted(monkeypatch: Any) -> None:
    """Shutdown answers every blocking query at once; the manager must wait for stop()
    instead of re-asking in a loop (it once burned a core until the agent exited)."""
    import nomadpaas.agent.server.deploymentwatcher.deployments_watcher as module

    calls = [0]
    real = module._active_ids

    def counting(snap: Any) -> Any:
        calls[0] += 1
        return real(snap)

    monkeypatch.setattr(module, "_active_ids", counting)
    store = StateStore(None)
    manager = DeploymentsWatcher(store, FakeTriggers())
    manager.start()
    try:
        assert eventually(lambda: calls[0] >= 1)
        store.interrupt_blocking()
        time.sleep(0.1)
        before = calls[0]
        time.sleep(0.5)
        assert calls[0] - before <= 2
    finally:
        manager.stop()
        store.close()
