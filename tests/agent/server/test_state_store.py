"""State store: index per write, frozen rows, atomic multi-table writes, persistence,
subscribers, and blocking queries from threads and from asyncio."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from nomadpaas.agent.server.state.frozen import FrozenDict, thaw
from nomadpaas.agent.server.state.state_store import Commit, Snapshot, StateStore, Txn

TABLES = ("variables", "nodes")


def put(store: StateStore, table: str, key: tuple[str, ...], row: dict[str, Any]) -> int:
    def fn(txn: Txn) -> None:
        txn.put(table, key, {**row, "ModifyIndex": txn.index})

    return store.write("Test", fn)[1]


def table_query(table: str):  # type: ignore[no-untyped-def]
    def query(snap: Snapshot) -> tuple[int, int]:
        return snap.count(table), snap.table_index(table)

    return query


def test_each_write_bumps_global_index_and_only_touched_table_index() -> None:
    store = StateStore(None, TABLES)
    assert put(store, "variables", ("default", "a"), {"v": 1}) == 1
    assert put(store, "nodes", ("n1",), {"v": 2}) == 2
    snap = store.snapshot()
    assert snap.index == 2
    assert snap.table_index("variables") == 1
    assert snap.table_index("nodes") == 2


def test_noop_write_keeps_index() -> None:
    store = StateStore(None, TABLES)
    put(store, "variables", ("default", "a"), {})
    result, index = store.write("Noop", lambda txn: "nothing")
    assert (result, index) == ("nothing", 1)
    # Deleting a missing row is no change either.
    _, index = store.write("Del", lambda txn: txn.delete("variables", ("default", "zz")))
    assert index == 1


def test_rows_are_frozen_and_snapshots_do_not_change() -> None:
    store = StateStore(None, TABLES)
    put(store, "variables", ("default", "a"), {"Items": {"k": "v"}, "L": [1]})
    before = store.snapshot()
    row = before.get("variables", ("default", "a"))
    assert isinstance(row, FrozenDict)
    with pytest.raises(TypeError):
        row["Items"] = {}
    with pytest.raises(TypeError):
        row["Items"]["k"] = "changed"
    assert isinstance(row["L"], tuple)
    changed = thaw(row)
    changed["Items"]["k"] = "new"
    store.write("Test", lambda txn: txn.put("variables", ("default", "a"), changed))
    assert before.get("variables", ("default", "a"))["Items"]["k"] == "v"
    assert store.snapshot().get("variables", ("default", "a"))["Items"]["k"] == "new"


def test_multi_table_write_is_atomic_and_exception_rolls_back(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db", TABLES)

    def both(txn: Txn) -> None:
        txn.put("variables", ("default", "a"), {"x": 1})
        txn.put("nodes", ("n",), {"y": 2})

    _, index = store.write("Both", both)
    snap = store.snapshot()
    assert snap.table_index("variables") == snap.table_index("nodes") == index

    def fails(txn: Txn) -> None:
        txn.put("variables", ("default", "b"), {"x": 1})
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.write("Fails", fails)
    assert store.snapshot().get("variables", ("default", "b")) is None
    assert store.latest_index == index
    store.close()
    reopened = StateStore(tmp_path / "state.db", TABLES)
    assert reopened.snapshot().get("variables", ("default", "b")) is None
    assert reopened.latest_index == index


def test_txn_reads_its_own_writes_and_lists_by_prefix() -> None:
    store = StateStore(None, TABLES)
    put(store, "variables", ("default", "a"), {"n": 1})
    put(store, "variables", ("other", "z"), {"n": 9})

    def fn(txn: Txn) -> list[Any]:
        txn.put("variables", ("default", "b"), {"n": 2})
        txn.delete("variables", ("default", "a"))
        assert txn.get("variables", ("default", "a")) is None
        return [r["n"] for r in txn.list("variables", ("default",))]

    seen, _ = store.write("Fn", fn)
    assert seen == [2]
    assert [r["n"] for r in store.snapshot().list("variables")] == [2, 9]


def test_persistence_reloads_rows_and_indexes(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db", TABLES)
    put(store, "variables", ("default", "a"), {"Items": {"k": "v"}})
    put(store, "nodes", ("n",), {"Name": "x"})
    store.write("Del", lambda txn: txn.delete("nodes", ("n",)))
    store.close()
    again = StateStore(tmp_path / "state.db", TABLES)
    snap = again.snapshot()
    assert snap.index == 3
    assert snap.table_index("nodes") == 3 and snap.table_index("variables") == 1
    assert snap.get("variables", ("default", "a"))["Items"] == {"k": "v"}
    assert snap.get("nodes", ("n",)) is None
    assert put(again, "nodes", ("m",), {}) == 4


def test_subscribers_see_commits_in_order_with_changes() -> None:
    store = StateStore(None, TABLES)
    seen: list[Commit] = []
    unsubscribe = store.subscribe(seen.append)
    put(store, "variables", ("default", "a"), {"n": 1})
    store.write("Delete", lambda txn: txn.delete("variables", ("default", "a")))
    unsubscribe()
    put(store, "variables", ("default", "b"), {"n": 2})
    assert [(c.index, c.msg_type) for c in seen] == [(1, "Test"), (2, "Delete")]
    change = seen[1].changes[0]
    assert (change.table, change.key, change.deleted, change.obj["n"]) == (
        "variables", ("default", "a"), True, 1,
    )  # fmt: skip


def test_unknown_table_is_an_error() -> None:
    store = StateStore(None, TABLES)
    with pytest.raises(KeyError):
        store.write("X", lambda txn: txn.put("jobs", ("a",), {}))


def test_blocking_query_from_thread_wakes_on_write_and_times_out() -> None:
    store = StateStore(None, TABLES)
    put(store, "nodes", ("n",), {})
    # Timeout: nothing written, returns the same index after about the wait.
    started = time.monotonic()
    _, index = store.blocking_query(table_query("variables"), store.latest_index, 0.3)
    assert index == 0 and 0.25 <= time.monotonic() - started < 5

    results: list[tuple[int, int]] = []
    waiter = threading.Thread(
        target=lambda: results.append(store.blocking_query(table_query("variables"), 1, 30))
    )
    waiter.start()
    time.sleep(0.1)
    put(store, "nodes", ("m",), {})  # another table: the waiter reruns, keeps waiting
    time.sleep(0.1)
    assert waiter.is_alive()
    put(store, "variables", ("default", "a"), {})
    waiter.join(10)
    assert results == [(1, 3)]


def test_blocking_query_async_many_waiters_wake_on_one_write() -> None:
    store = StateStore(None, TABLES)

    async def main() -> list[tuple[int, int]]:
        waiters = [
            asyncio.create_task(store.blocking_query_async(table_query("variables"), 1, 30))
            for _ in range(200)
        ]
        await asyncio.sleep(0.1)
        assert not any(w.done() for w in waiters)
        # Write from another thread, as the HTTP layer does (fsync off the loop).
        await asyncio.to_thread(put, store, "variables", ("default", "a"), {})
        return await asyncio.wait_for(asyncio.gather(*waiters), 10)

    put(store, "variables", ("default", "z"), {})  # index 1, so min_index 1 blocks
    results = asyncio.run(main())
    assert results == [(2, 2)] * 200


def test_blocking_query_async_times_out_with_same_index() -> None:
    store = StateStore(None, TABLES)
    put(store, "variables", ("default", "a"), {})

    async def main() -> tuple[int, int]:
        return await store.blocking_query_async(table_query("variables"), 1, 0.2)

    started = time.monotonic()
    assert asyncio.run(main()) == (1, 1)
    assert time.monotonic() - started >= 0.15


def test_interrupt_releases_parked_queries() -> None:
    store = StateStore(None, TABLES)
    put(store, "variables", ("default", "a"), {})
    done = threading.Event()

    def wait() -> None:
        store.blocking_query(table_query("variables"), 1, 60)
        done.set()

    threading.Thread(target=wait, daemon=True).start()
    time.sleep(0.1)
    store.interrupt_blocking()
    assert done.wait(5)


def test_concurrent_writers_get_distinct_increasing_indexes() -> None:
    store = StateStore(None, TABLES)
    indexes: list[int] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for i in range(50):
            idx = put(store, "variables", ("default", f"{n}-{i}"), {})
            with lock:
                indexes.append(idx)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(indexes) == list(range(1, 201))
    assert store.snapshot().count("variables") == 200
