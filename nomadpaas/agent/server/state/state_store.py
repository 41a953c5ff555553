"""The state store: the single writer of all agent state, read as frozen snapshots;
mirrors nomad/state/state_store.go (+ the FSM's apply loop, nomad/fsm.go).

How it works, in Nomad's terms:
- **Tables** (schema.py) map a key tuple to a frozen JSON row. A `Snapshot` is an
  immutable view of every table at one index; readers never lock and never see a
  half-applied write. Rows are `FrozenDict`s: mutating one raises TypeError.
  Secondary indexes (allocs by job, node, eval, deployment; schema.INDEXES) and tallies
  (allocation counts per job; schema.TALLIES) and watch indexes (the last commit that
  changed what a node's client acts on; schema.WATCHES) are part of the snapshot, moved
  by each commit's changes (indexes.py, tallies.py, watches.py); snapshot.py reads them.
- **Writes** go through `write(msg_type, fn)`: `fn(txn)` reads and puts/deletes rows on
  a `Txn`; if it changed anything, all of it is committed at one new raft-like index
  (`txn.index`), persisted and fsync'd (persistence.py) before `write` returns, and
  the table indexes of every touched table move to that index. Writers are serialised
  by one lock, so `fn` may check-and-set safely. If `fn` raises, nothing changes.
- **Blocking queries** (`blocking_query` from threads, `blocking_query_async` from
  asyncio handlers) rerun a read after every commit until its index passes `min_index`
  or the timeout ends, like `BlockingQuery` in nomad/state.
- **Subscribers** get every `Commit` (its index, message type and changed rows), in
  commit order, the way nomad/state/events.go derives events from committed changes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from nomadpaas.agent.server.state import indexes as idx
from nomadpaas.agent.server.state import tallies as tl
from nomadpaas.agent.server.state import watches as wt
from nomadpaas.agent.server.state.frozen import freeze
from nomadpaas.agent.server.state.persistence import RowWrite, SQLitePersistence
from nomadpaas.agent.server.state.schema import INDEXES, TABLES, TALLIES, WATCHES
from nomadpaas.agent.server.state.snapshot import Change, Key, KeyedRows, Row, Rows, Snapshot, Txn

log = logging.getLogger(__name__)
T = TypeVar("T")
Query = Callable[["Snapshot"], tuple[T, int]]

__all__ = [
    "Change",
    "Commit",
    "Key",
    "KeyedRows",
    "Query",
    "Row",
    "Rows",
    "Snapshot",
    "StateStore",
    "Txn",
]


@dataclass(frozen=True)
class Commit:
    """One committed write: what the event stream (issue 4) turns into events."""

    index: int
    msg_type: str
    changes: tuple[Change, ...]


class StateStore:
    """The agent's state; see the module docstring. `path=None` keeps it in memory only."""

    def __init__(self, path: Path | None, tables: Iterable[str] = TABLES) -> None:
        self._tables = tuple(tables)
        self._specs = {t: INDEXES[t] for t in self._tables if t in INDEXES}
        self._tally_specs = {t: TALLIES[t] for t in self._tables if t in TALLIES}
        self._watch_specs = {t: WATCHES[t] for t in self._tables if t in WATCHES}
        self._persist = SQLitePersistence(path) if path is not None else None
        if self._persist is not None:
            loaded = self._persist.load(self._tables)
            rows = {t: {k: freeze(v) for k, v in loaded.rows[t].items()} for t in self._tables}
            self._snap = Snapshot(
                loaded.latest_index,
                rows,
                loaded.table_indexes,
                specs=self._specs,
                tally_specs=self._tally_specs,
                watch_specs=self._watch_specs,
            )
        else:
            self._snap = Snapshot(
                0,
                {t: {} for t in self._tables},
                {},
                specs=self._specs,
                tally_specs=self._tally_specs,
                watch_specs=self._watch_specs,
            )
        self._write_lock = threading.Lock()
        # Guards `_snap` swaps and the waiter registries, so a waiter can never miss a commit.
        self._cond = threading.Condition(threading.Lock())
        self._async_waiters: dict[asyncio.AbstractEventLoop, set[asyncio.Future[None]]] = {}
        self._subscribers: list[Callable[[Commit], None]] = []
        self._closed = False
        self._interrupted = False  # blocking queries return at once (agent shutting down)

    # -- reads -------------------------------------------------------------------------

    @property
    def latest_index(self) -> int:
        return self._snap.index

    def snapshot(self) -> Snapshot:
        return self._snap

    # -- writes ------------------------------------------------------------------------

    def write(self, msg_type: str, fn: Callable[[Txn], T]) -> tuple[T, int]:
        """Run `fn` in a write transaction and commit it durably.

        Returns `(fn's result, index)`: the new index if anything changed, else the
        current latest index (a no-op write does not move the index, as in Nomad).
        Blocking I/O (fsync): call it from a thread, not directly on an event loop.
        """
        with self._write_lock:
            if self._closed:
                raise RuntimeError("state store is closed")
            base = self._snap
            txn = Txn(base, base.index + 1, msg_type)
            result = fn(txn)
            changes = tuple(txn._changes())
            if not changes:
                return result, base.index
            touched = sorted({c.table for c in changes})
            # The next snapshot is built before anything is persisted: should building it
            # fail, the write fails whole, as if `fn` had raised.
            tables = dict(base._tables)
            for table in touched:
                tables[table] = dict(tables[table])  # copy-on-write per touched table
            for c in changes:
                if c.deleted:
                    del tables[c.table][c.key]
                else:
                    tables[c.table][c.key] = c.obj
            table_indexes = dict(base._table_indexes)
            table_indexes.update(dict.fromkeys(touched, txn.index))
            indexes = idx.apply(self._specs, base._indexes, base._tables, changes)
            tallies = tl.apply(self._tally_specs, base._tallies, base._tables, changes)
            watches = wt.apply(self._watch_specs, base._watches, base._tables, changes, txn.index)
            if self._persist is not None:
                writes = [RowWrite(c.table, c.key, None if c.deleted else c.obj) for c in changes]
                self._persist.commit(txn.index, writes, touched)
            self._publish(
                Snapshot(
                    txn.index,
                    tables,
                    table_indexes,
                    indexes,
                    self._specs,
                    tallies,
                    self._tally_specs,
                    watches=watches,
                    watch_specs=self._watch_specs,
                )
            )
            commit = Commit(txn.index, msg_type, changes)
            for callback in list(self._subscribers):
                try:
                    callback(commit)
                except Exception:  # a broken subscriber must not fail the write
                    log.exception("state store subscriber failed at index %d", txn.index)
            return result, txn.index

    def subscribe(self, callback: Callable[[Commit], None]) -> Callable[[], None]:
        """Call `callback(commit)` after every commit, in order; returns an unsubscribe.

        It runs on the writer's thread while the write lock is held: keep it short, never
        block, never write to the store from it (hand work to a queue instead).
        """
        with self._write_lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._write_lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def interrupt_blocking(self) -> None:
        """Make every parked and future blocking query return now (shutdown begins)."""
        self._interrupted = True
        self._publish(self._snap)

    def close(self) -> None:
        """Refuse further writes, wake every waiter, close the file."""
        with self._write_lock:
            self._closed = True
            self._interrupted = True
            self._publish(self._snap)
            if self._persist is not None:
                self._persist.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- blocking queries --------------------------------------------------------------

    def blocking_query(self, query: Query[T], min_index: int, timeout: float) -> tuple[T, int]:
        """From a thread: rerun `query(snapshot) -> (result, index)` until index > min_index.

        Returns at once when `min_index` is 0; returns the last result when `timeout`
        seconds pass or the store closes. Callers loop with the returned index.
        """
        deadline = time.monotonic() + timeout
        while True:
            snap = self._snap
            result, index = query(snap)
            if min_index == 0 or index > min_index or self._interrupted:
                return result, index
            with self._cond:
                while self._snap is snap and not self._interrupted:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return result, index
                    self._cond.wait(remaining)

    async def blocking_query_async(
        self, query: Query[T], min_index: int, timeout: float
    ) -> tuple[T, int]:
        """`blocking_query` for asyncio: parks a future, never a thread."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            snap = self._snap
            result, index = query(snap)
            if min_index == 0 or index > min_index or self._interrupted:
                return result, index
            remaining = deadline - loop.time()
            if remaining <= 0:
                return result, index
            fut: asyncio.Future[None] = loop.create_future()
            with self._cond:
                if self._snap is not snap:
                    continue  # a commit landed since the read: rerun the query at once
                self._async_waiters.setdefault(loop, set()).add(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                return result, index
            finally:
                with self._cond:
                    waiters = self._async_waiters.get(loop)
                    if waiters is not None:
                        waiters.discard(fut)

    def _publish(self, snap: Snapshot) -> None:
        """Swap in a new snapshot and wake every waiter, threads and event loops alike."""
        with self._cond:
            self._snap = snap
            waiting = self._async_waiters
            self._async_waiters = {}
            self._cond.notify_all()
        for loop, futures in waiting.items():
            try:
                # One wake-up per loop, however many requests are parked on it.
                loop.call_soon_threadsafe(_resolve_all, futures)
            except RuntimeError:  # that loop is closed; nothing left to wake
                pass


def _resolve_all(futures: set[asyncio.Future[None]]) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_result(None)
