"""Watch indexes of the state store: per value of some row fields (an allocation's NodeID),
the index of the last commit that added or removed such a row or changed one of its
watched fields; kept current commit by commit. Serves the node's client loop the way
Node.GetClientAllocs serves Nomad's client (nomad/node_endpoint.go): Nomad's client gets
each allocation's AllocModifyIndex and pulls only the changed ones, so a status update
it sent itself costs it nothing; here the client learns in one lookup that nothing it
acts on changed, instead of walking all of its allocations after every commit.

A commit that only changes other fields (the client's own ClientStatus and TaskStates)
moves no watch index. Like tables, indexes and tallies, watch maps are never changed
once a snapshot holds them: a commit copies the maps it moves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nomadpaas.agent.server.state.tallies import (
    Field,
    Values,
    field_value,
    row_transitions,
    values,
)

Key = tuple[str, ...]
# (table, name) → group values → index of the last commit that moved them
Watches = dict[tuple[str, str], dict[Values, int]]
# table → name → (group fields, watched fields)
Specs = Mapping[str, Mapping[str, tuple[tuple[Field, ...], tuple[Field, ...]]]]


def build(specs: Specs, tables: Mapping[str, Mapping[Key, Any]], index: int) -> Watches:
    """Every watch of `specs` over `tables` (store open): each group present starts at
    `index`, the store's latest (nothing older is known)."""
    out: Watches = {}
    for table, by_name in specs.items():
        for name, (group, _) in by_name.items():
            out[(table, name)] = {values(row, group): index for row in tables[table].values()}
    return out


def apply(
    specs: Specs,
    watches: Watches,
    old_rows: Mapping[str, Mapping[Key, Any]],
    changes: Iterable[tuple[str, Key, Any, bool]],
    index: int,
) -> Watches:
    """The watches after `changes` ((table, key, row, deleted), `row` being the old row
    when deleted) committed at `index`; `old_rows` are the tables before them.
    Unchanged maps are shared."""
    out: Watches | None = None
    for table, by_name, before, after in row_transitions(specs, old_rows, changes):
        for name, (group, watched) in by_name.items():
            moved = _moved(group, watched, before, after)
            if not moved:
                continue
            ident = (table, name)
            if out is None:
                out = dict(watches)
            if out[ident] is watches[ident]:
                out[ident] = dict(watches[ident])
            for g in moved:
                out[ident][g] = index
    return watches if out is None else out


def _moved(
    group: tuple[Field, ...], watched: tuple[Field, ...], before: Any, after: Any
) -> list[Values]:
    """The group values whose watch index one row change moves."""
    if before is None or after is None:
        return [values(r, group) for r in (before, after) if r is not None]
    old, new = values(before, group), values(after, group)
    if old != new:
        return [old, new]
    for f in watched:
        # A client update shares every other value with the old row: identity of the
        # top-level value settles most fields without looking inside.
        top = f if type(f) is str else f[0]
        a, b = before.get(top), after.get(top)
        if a is b:
            continue
        if top is not f:
            a, b = field_value(before, f), field_value(after, f)
        if a != b:
            return [new]
    return []
