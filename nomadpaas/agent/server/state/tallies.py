"""Counted indexes of the state store: how many rows of a table share some field values,
per group (allocations per job, by incarnation, task group, client and desired status);
kept current commit by commit, as updateSummaryWithAlloc in nomad/state/state_store.go
keeps job summaries.

A job summary used to recount every allocation of the job on each client update: about
n² work for a job of n allocations that start one batch at a time. A tally moves only
the rows a commit changed. Like tables and indexes, tally maps are never changed once a
snapshot holds them: a commit copies the outer map and the groups it touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

Key = tuple[str, ...]
# A top-level field name, or a path into nested objects (("Job", "CreateIndex")).
Field = str | tuple[str, ...]
Values = tuple[Any, ...]
Counts = dict[Values, int]  # counted values → how many rows
# (table, name) → group values → counts
Tallies = dict[tuple[str, str], dict[Values, Counts]]
# table → name → (group fields, counted fields)
Specs = Mapping[str, Mapping[str, tuple[tuple[Field, ...], tuple[Field, ...]]]]


def field_value(row: Any, field: Field) -> Any:
    if type(field) is str:
        return row.get(field)
    value = row
    for part in field:
        # isinstance(dict) first: rows are dicts, and the Mapping ABC check is slow.
        if not isinstance(value, dict) and not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def values(row: Any, fields: tuple[Field, ...]) -> Values:
    # Every commit computes these for each changed row, twice (the summary refresh and
    # the new snapshot): plain fields are read inline.
    return tuple([row.get(f) if type(f) is str else field_value(row, f) for f in fields])


def build(specs: Specs, tables: Mapping[str, Mapping[Key, Any]]) -> Tallies:
    """Every tally of `specs` over the rows of `tables` (store open)."""
    out: Tallies = {}
    for table, by_name in specs.items():
        for name, (group, counted) in by_name.items():
            tally: dict[Values, Counts] = {}
            for row in tables[table].values():
                counts = tally.setdefault(values(row, group), {})
                value = values(row, counted)
                counts[value] = counts.get(value, 0) + 1
            out[(table, name)] = tally
    return out


def moves(
    group: tuple[Field, ...], counted: tuple[Field, ...], before: Any, after: Any
) -> list[tuple[Values, Values, int]]:
    """(group values, counted values, ±1) for one row going from `before` to `after`
    (None: absent); empty when the row's tallied values did not change."""
    old = (values(before, group), values(before, counted)) if before is not None else None
    new = (values(after, group), values(after, counted)) if after is not None else None
    if old == new:
        return []
    out = []
    if old is not None:
        out.append((old[0], old[1], -1))
    if new is not None:
        out.append((new[0], new[1], 1))
    return out


def add(counts: Counts, value: Values, delta: int) -> None:
    n = counts.get(value, 0) + delta
    if n:
        counts[value] = n
    else:
        counts.pop(value, None)


S = TypeVar("S")


def row_transitions(
    specs: Mapping[str, S],
    old_rows: Mapping[str, Mapping[Key, Any]],
    changes: Iterable[tuple[str, Key, Any, bool]],
) -> Iterator[tuple[str, S, Any, Any]]:
    """(table, its specs, row before, row after) for each change ((table, key, row,
    deleted), `row` being the old row when deleted) to a table `specs` covers; before or
    after is None for a row added or deleted. `old_rows`: the tables before the changes."""
    for table, key, row, deleted in changes:
        by_name = specs.get(table)
        if not by_name:
            continue
        yield table, by_name, old_rows[table].get(key), None if deleted else row


def apply(
    specs: Specs,
    tallies: Tallies,
    old_rows: Mapping[str, Mapping[Key, Any]],
    changes: Iterable[tuple[str, Key, Any, bool]],
) -> Tallies:
    """The tallies after `changes` ((table, key, row, deleted), `row` being the old row
    when deleted); `old_rows` are the tables before them. Unchanged maps are shared."""
    out: Tallies | None = None
    copied: set[tuple[tuple[str, str], Values]] = set()
    for table, by_name, before, after in row_transitions(specs, old_rows, changes):
        for name, (group, counted) in by_name.items():
            for group_value, value, delta in moves(group, counted, before, after):
                if out is None:
                    out = dict(tallies)
                ident = (table, name)
                if (ident, ()) not in copied:
                    out[ident] = dict(out[ident])
                    copied.add((ident, ()))
                tally = out[ident]
                if (ident, group_value) not in copied:
                    tally[group_value] = dict(tally.get(group_value, {}))
                    copied.add((ident, group_value))
                add(tally[group_value], value, delta)
                if not tally[group_value]:
                    del tally[group_value]
                    copied.discard((ident, group_value))
    return tallies if out is None else out
