"""Frozen rows: read-only JSON values handed out by the state store; mirrors nomad/state's
"objects returned are constants" rule, enforced instead of promised.

`freeze` turns a JSON-able value into one that cannot be mutated in place: dicts become
`FrozenDict` (a dict subclass, so `json.dumps` and `==` still work) and lists become
tuples. `thaw` makes the deep mutable copy a writer edits before putting a new row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn


class FrozenDict(dict[str, Any]):
    """A dict that refuses every mutation; the state store's row type."""

    __slots__ = ()

    def _readonly(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("state store objects are read-only; thaw() a copy to change it")

    __setitem__ = _readonly
    __delitem__ = _readonly
    __ior__ = _readonly
    clear = _readonly
    pop = _readonly
    popitem = _readonly
    setdefault = _readonly
    update = _readonly

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> FrozenDict:
        return self

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[str, Any]]]:
        return (FrozenDict, (dict(self),))


# Values that are immutable as they are: returned by `freeze` without a look inside.
_SCALARS = frozenset({str, int, float, bool, type(None), FrozenDict})
_LEAVES = frozenset({str, int, float, bool, type(None)})  # what `thaw` copies as is
_STR = frozenset({str})


def freeze(value: Any) -> Any:
    """A deep read-only copy of a JSON-able value (already frozen parts are reused)."""
    # Exact type checks first: every write freezes its rows, and isinstance() against the
    # Mapping ABC was most of the cost of a 1,000-allocation plan.
    # Scalars inside containers are checked inline too: no call per leaf.
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        # A leaf (string keys, scalar values: a task event, say) is copied in one go;
        # the type checks run in C and stop at the first miss.
        if _SCALARS.issuperset(map(type, value.values())) and _STR.issuperset(map(type, value)):
            return FrozenDict(value)
        return FrozenDict(
            {
                k if type(k) is str else str(k): v if type(v) in _SCALARS else freeze(v)
                for k, v in value.items()
            }
        )
    if kind is list or kind is tuple:
        if _SCALARS.issuperset(map(type, value)):
            return tuple(value)
        return tuple([v if type(v) in _SCALARS else freeze(v) for v in value])
    if isinstance(value, FrozenDict):
        return value
    if isinstance(value, Mapping):
        return FrozenDict({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def replace(row: FrozenDict, changes: Mapping[str, Any]) -> FrozenDict:
    """`row` (frozen) with `changes` applied, frozen: only the changed values are frozen,
    every other value is shared with `row`. What a writer that changes a few fields of a
    big row (a client update of an allocation) puts, instead of freezing the whole row
    again."""
    out = dict(row)
    for k, v in changes.items():
        out[k] = v if type(v) in _SCALARS else freeze(v)
    return FrozenDict(out)


def freeze_shared(row: Any, memo: dict[int, tuple[Any, Any]]) -> Any:
    """`freeze` for a batch of rows built to share parts (a plan's placements share their
    resources and metric): a container below the row met again, by identity, is frozen
    once and the frozen copy shared. `memo` lives for one batch, which nobody changes
    meanwhile; it holds every container it saw (the rows themselves are not remembered),
    so no id is reused while it lives."""
    if type(row) is not dict:
        return _freeze_shared(row, memo)
    # Most of an allocation's ~40 values are scalars: checked inline, not one call each.
    return FrozenDict(
        {
            k if type(k) is str else str(k): v if type(v) in _SCALARS else _freeze_shared(v, memo)
            for k, v in row.items()
        }
    )


def _freeze_shared(value: Any, memo: dict[int, tuple[Any, Any]]) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict or kind is list or kind is tuple:
        hit = memo.get(id(value))
        if hit is not None:
            return hit[1]
        frozen: Any
        if kind is dict:
            frozen = FrozenDict(
                {
                    k if type(k) is str else str(k): v
                    if type(v) in _SCALARS
                    else _freeze_shared(v, memo)
                    for k, v in value.items()
                }
            )
        else:
            frozen = tuple([v if type(v) in _SCALARS else _freeze_shared(v, memo) for v in value])
        memo[id(value)] = (value, frozen)
        return frozen
    return freeze(value)


def thaw(value: Any) -> Any:
    """A deep mutable copy of a (possibly frozen) JSON-able value."""
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is FrozenDict or kind is dict:
        return {k: v if type(v) in _LEAVES else thaw(v) for k, v in value.items()}
    if kind is tuple or kind is list:
        return [v if type(v) in _LEAVES else thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value
