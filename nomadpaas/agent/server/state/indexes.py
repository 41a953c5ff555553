"""The state store's secondary indexes (allocs by job, node, eval, deployment; evals and
deployments by job), kept current commit by commit; mirrors the non-`id` indexes of
nomad/state/schema.go (go-memdb keeps them in its radix trees the same way).

An index maps a value (the tuple of the row's indexed fields) to the sorted tuple of the
keys of the rows holding it. Like the tables, index maps are never changed once a
snapshot holds them: a commit copies only the maps and key tuples whose membership
changed. A row updated in place (an allocation's client status, say) changes no index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Key = tuple[str, ...]
IndexValue = tuple[Any, ...]
IndexMap = dict[IndexValue, tuple[Key, ...]]
# (table, index name) → that index's map
Indexes = dict[tuple[str, str], IndexMap]
# table → index name → indexed fields (schema.INDEXES, limited to the store's tables)
Specs = Mapping[str, Mapping[str, tuple[str, ...]]]


def index_value(row: Any, fields: tuple[str, ...]) -> IndexValue:
    return tuple([row.get(f) for f in fields])


def build(specs: Specs, tables: Mapping[str, Mapping[Key, Any]]) -> Indexes:
    """Every index of `specs` over the rows of `tables` (store open)."""
    out: Indexes = {}
    for table, by_name in specs.items():
        rows = tables[table]
        for name, fields in by_name.items():
            groups: dict[IndexValue, list[Key]] = {}
            for key, row in rows.items():
                groups.setdefault(index_value(row, fields), []).append(key)
            out[(table, name)] = {v: tuple(sorted(keys)) for v, keys in groups.items()}
    return out


def _all_fields(by_name: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(sorted({f for fields in by_name.values() for f in fields}))


class _Edits:
    """Keys joining and leaving each index value within one commit."""

    __slots__ = ("add", "remove")

    def __init__(self) -> None:
        self.add: list[Key] = []
        self.remove: set[Key] = set()


def apply(
    specs: Specs,
    indexes: Indexes,
    old_rows: Mapping[str, Mapping[Key, Any]],
    changes: Iterable[tuple[str, Key, Any, bool]],
) -> Indexes:
    """The indexes after `changes` ((table, key, row, deleted), `row` being the old row
    when deleted); `old_rows` are the tables before them. Unchanged maps are shared."""
    edits: dict[tuple[str, str], dict[IndexValue, _Edits]] = {}
    watched: dict[str, tuple[str, ...]] = {}
    for table, key, row, deleted in changes:
        by_name = specs.get(table)
        if not by_name:
            continue
        old = old_rows[table].get(key)
        new = None if deleted else row
        if old is not None and new is not None:
            # Most writes update a row in place (client status): one look at every
            # indexed field says no index moves.
            fields_of_table = watched.get(table)
            if fields_of_table is None:
                fields_of_table = watched[table] = _all_fields(by_name)
            if [old.get(f) for f in fields_of_table] == [new.get(f) for f in fields_of_table]:
                continue
        for name, fields in by_name.items():
            before = index_value(old, fields) if old is not None else None
            after = index_value(new, fields) if new is not None else None
            if before == after:
                continue
            per_value = edits.setdefault((table, name), {})
            if before is not None:
                per_value.setdefault(before, _Edits()).remove.add(key)
            if after is not None:
                per_value.setdefault(after, _Edits()).add.append(key)
    if not edits:
        return indexes
    out = dict(indexes)
    for ident, per_value in edits.items():
        index = dict(out[ident])
        for value, e in per_value.items():
            keys = index.get(value, ())
            if e.remove:
                keys = tuple([k for k in keys if k not in e.remove])
            if e.add:
                keys = tuple(sorted((*keys, *e.add)))  # two sorted runs: a cheap merge
            if keys:
                index[value] = keys
            else:
                index.pop(value, None)
        out[ident] = index
    return out
