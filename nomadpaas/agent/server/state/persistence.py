"""Durable storage under the state store: one SQLite file, one SQL transaction per write;
plays the part of Nomad's raft log + snapshots (nomad/fsm.go) on a single machine.

The file is `<data_dir>/server/state.db`, in WAL mode with `synchronous=FULL`, so a
write the store acknowledged has been fsync'd and survives `kill -9` or power loss.
Rows are stored as JSON text; everything is read back into memory once, at open.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from nomadpaas.agent.server.state.row_encoder import RowEncoder, encode_key

# Where the raft-like global index lives in the `indexes` table (no real table has this name).
LATEST_INDEX_KEY = "_latest"

# `rows` is an ordinary rowid table: its values are kilobytes (an allocation embeds its
# Job), and SQLite's WITHOUT ROWID layout suits small rows only (rewriting 2,000
# allocations took about twice the CPU). A data dir created by an earlier build keeps its
# WITHOUT ROWID table; the statements below work the same on both.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    tbl   TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (tbl, key)
);
CREATE TABLE IF NOT EXISTS indexes (
    tbl TEXT PRIMARY KEY,
    idx INTEGER NOT NULL
) WITHOUT ROWID;
"""


class RowWrite(NamedTuple):
    """One row change to persist: `value` None means delete."""

    table: str
    key: tuple[str, ...]
    value: Any | None


@dataclass
class Loaded:
    """Everything read back at open: rows per table and the indexes."""

    rows: dict[str, dict[tuple[str, ...], Any]]
    table_indexes: dict[str, int]
    latest_index: int


class SQLitePersistence:
    """The state store's durable copy; only the store's writer calls `commit`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The store serialises writers itself; readers never touch SQLite after `load`.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._encoder = RowEncoder()

    def load(self, tables: Iterable[str]) -> Loaded:
        rows: dict[str, dict[tuple[str, ...], Any]] = {t: {} for t in tables}
        for tbl, key, value in self._db.execute("SELECT tbl, key, value FROM rows"):
            # Rows of a table this build no longer knows are kept on disk, just not served.
            if tbl in rows:
                rows[tbl][tuple(json.loads(key))] = json.loads(value)
        indexes = {tbl: int(idx) for tbl, idx in self._db.execute("SELECT tbl, idx FROM indexes")}
        latest = indexes.pop(LATEST_INDEX_KEY, 0)
        return Loaded(rows, indexes, latest)

    def commit(self, index: int, writes: Iterable[RowWrite], tables: Iterable[str]) -> None:
        """Write the changed rows and indexes atomically; returns once fsync'd."""
        writes = list(writes)
        encode = self._encoder.encode
        # Generators: each row's JSON text is made as SQLite takes it, so a 1,000-row plan
        # never holds all of them (megabytes) at once.
        deletes = ((w.table, encode_key(w.key)) for w in writes if w.value is None)
        puts = (
            (w.table, encode_key(w.key), encode(w.value)) for w in writes if w.value is not None
        )
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            # A key is never both put and deleted in one commit: the order does not matter.
            cur.executemany("DELETE FROM rows WHERE tbl = ? AND key = ?", deletes)
            cur.executemany("INSERT OR REPLACE INTO rows (tbl, key, value) VALUES (?, ?, ?)", puts)
            cur.executemany(
                "INSERT OR REPLACE INTO indexes (tbl, idx) VALUES (?, ?)",
                [(t, index) for t in (*tables, LATEST_INDEX_KEY)],
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()
