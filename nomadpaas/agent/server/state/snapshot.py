"""Reading and writing the state store's tables: a `Snapshot` (an immutable view of
every table, its secondary indexes and tallies at one index) and a `Txn` (a write
transaction: a snapshot plus its own pending rows); mirrors the read and write
transactions of go-memdb under nomad/state/state_store.go.

The store (state_store.py) creates both: a Txn for each write, a new Snapshot for each
commit. Nothing here locks: a Snapshot never changes, and a Txn belongs to one writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from nomadpaas.agent.server.state import indexes as idx
from nomadpaas.agent.server.state import tallies as tl
from nomadpaas.agent.server.state import watches as wt
from nomadpaas.agent.server.state.frozen import freeze

Key = tuple[str, ...]
Row = Any  # a FrozenDict in practice; typed loosely because rows are free-form Nomad JSON
Rows = list[Row]  # module-level aliases: the classes below have a method named `list`
KeyedRows = list[tuple[Key, Row]]

_DELETED = object()  # marks a key deleted inside a Txn's overlay
_ABSENT = object()  # a key this Txn has not touched


def _first(pair: tuple[Key, Any]) -> Key:
    return pair[0]


class Change(NamedTuple):
    """One committed row change. `obj` is the new row, or the old one when `deleted`.
    (A NamedTuple: a 1,000-allocation plan makes 1,000 of them under the write lock.)"""

    table: str
    key: Key
    obj: Row
    deleted: bool


class Snapshot:
    """An immutable view of all tables at `index`; cheap to take, safe to keep."""

    __slots__ = (
        "_indexes",
        "_specs",
        "_table_indexes",
        "_tables",
        "_tallies",
        "_tally_specs",
        "_watch_specs",
        "_watches",
        "index",
    )

    def __init__(
        self,
        index: int,
        tables: dict[str, dict[Key, Row]],
        table_indexes: dict[str, int],
        indexes: idx.Indexes | None = None,
        specs: idx.Specs | None = None,
        tallies: tl.Tallies | None = None,
        tally_specs: tl.Specs | None = None,
        *,
        watches: wt.Watches | None = None,
        watch_specs: wt.Specs | None = None,
    ) -> None:
        self.index = index
        self._tables = tables
        self._table_indexes = table_indexes
        self._specs: idx.Specs = specs if specs is not None else {}
        self._indexes = indexes if indexes is not None else idx.build(self._specs, tables)
        self._tally_specs: tl.Specs = tally_specs if tally_specs is not None else {}
        self._tallies = tallies if tallies is not None else tl.build(self._tally_specs, tables)
        self._watch_specs: wt.Specs = watch_specs if watch_specs is not None else {}
        self._watches = (
            watches if watches is not None else wt.build(self._watch_specs, tables, index)
        )

    def table_index(self, table: str) -> int:
        """The index of the last write to `table` (Nomad's `index` table); 0 if never."""
        self._check(table)
        return self._table_indexes.get(table, 0)

    def get(self, table: str, key: Key) -> Row | None:
        return self._tables[self._check(table)].get(key)

    def list(self, table: str, prefix: Key = ()) -> Rows:
        """Rows whose key starts with `prefix` (whole key parts), sorted by key."""
        return [row for _, row in self.items(table, prefix)]

    def items(self, table: str, prefix: Key = ()) -> KeyedRows:
        rows = self._tables[self._check(table)]
        n = len(prefix)
        return sorted(((k, v) for k, v in rows.items() if k[:n] == prefix), key=lambda kv: kv[0])

    def count(self, table: str) -> int:
        return len(self._tables[self._check(table)])

    def index_keys(self, table: str, index: str, value: tuple[Any, ...]) -> tuple[Key, ...]:
        """Keys of the rows whose `index` fields (schema.INDEXES) equal `value`, sorted."""
        return self._indexes[(table, index)].get(value, ())

    def by_index(self, table: str, index: str, value: tuple[Any, ...]) -> Rows:
        """Rows whose `index` fields (schema.INDEXES) equal `value`, sorted by key."""
        rows = self._tables[table]
        return [rows[k] for k in self.index_keys(table, index, value)]

    def tally(self, table: str, name: str, group: tuple[Any, ...]) -> tl.Counts:
        """How many rows of `group` have each combination of the counted fields of tally
        `name` (schema.TALLIES); a fresh dict, the caller's to keep."""
        return dict(self._tallies[(table, name)].get(group, {}))

    def watch_index(self, table: str, name: str, group: tuple[Any, ...]) -> int:
        """The index of the last commit that added, removed or changed (in a watched
        field) a row of `group` in watch `name` (schema.WATCHES); 0 if none ever did."""
        return self._watches[(table, name)].get(group, 0)

    def _check(self, table: str) -> str:
        if table not in self._tables:
            raise KeyError(f"unknown state store table {table!r}")
        return table


class Txn:
    """A write transaction: reads see the snapshot plus this transaction's own writes."""

    def __init__(self, base: Snapshot, index: int, msg_type: str) -> None:
        self.index = index  # the index this transaction commits at, for Create/ModifyIndex
        self.msg_type = msg_type
        self._base = base
        self._pending: dict[str, dict[Key, Any]] = {}

    def get(self, table: str, key: Key) -> Row | None:
        pending = self._pending.get(table, {})
        if key in pending:
            value = pending[key]
            return None if value is _DELETED else value
        return self._base.get(table, key)

    def list(self, table: str, prefix: Key = ()) -> Rows:
        merged: dict[Key, Row] = dict(self._base.items(table, prefix))
        n = len(prefix)
        for key, value in self._pending.get(table, {}).items():
            if key[:n] != prefix:
                continue
            if value is _DELETED:
                merged.pop(key, None)
            else:
                merged[key] = value
        return [merged[k] for k in sorted(merged)]

    def by_index(self, table: str, index: str, value: tuple[Any, ...]) -> Rows:
        """`Snapshot.by_index` with this transaction's own writes applied."""
        pending = self._pending.get(table)
        if not pending:
            return self._base.by_index(table, index, value)
        fields = self._base._specs[table][index]
        base_rows = self._base._tables[table]
        found: list[tuple[Key, Row]] = []
        for k in self._base.index_keys(table, index, value):
            row = pending.get(k, _ABSENT)
            if row is _ABSENT:
                found.append((k, base_rows[k]))
            elif row is not _DELETED and idx.index_value(row, fields) == value:
                found.append((k, row))
        joined = [
            (k, row)
            for k, row in pending.items()
            if row is not _DELETED
            and idx.index_value(row, fields) == value
            and (k not in base_rows or idx.index_value(base_rows[k], fields) != value)
        ]
        if joined:
            found = sorted(found + joined, key=_first)
        return [row for _, row in found]

    def tally(self, table: str, name: str, group: tuple[Any, ...]) -> tl.Counts:
        """`Snapshot.tally` with this transaction's own writes applied."""
        counts = self._base.tally(table, name, group)
        pending = self._pending.get(table)
        if pending:
            group_fields, counted = self._base._tally_specs[table][name]
            base_rows = self._base._tables[table]
            for k, row in pending.items():
                after = None if row is _DELETED else row
                for g, value, delta in tl.moves(group_fields, counted, base_rows.get(k), after):
                    if g == group:
                        tl.add(counts, value, delta)
        return counts

    def put(self, table: str, key: Key, row: Any) -> Row:
        """Insert or replace a row; returns the frozen row that will be stored."""
        self._base._check(table)
        frozen = freeze(row)
        self._pending.setdefault(table, {})[key] = frozen
        return frozen

    def delete(self, table: str, key: Key) -> Row | None:
        """Delete a row; returns the row that was there (None if absent: no change)."""
        old = self.get(table, key)
        if old is not None:
            self._pending.setdefault(table, {})[key] = _DELETED
        return old

    def _changes(self) -> Iterator[Change]:
        for table, rows in self._pending.items():
            for key, value in rows.items():
                if value is _DELETED:
                    old = self._base.get(table, key)
                    if old is not None:  # deleting something put in this same txn: no-op
                        yield Change(table, key, old, True)
                else:
                    yield Change(table, key, value, False)
