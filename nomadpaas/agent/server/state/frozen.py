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


def freeze(value: Any) -> Any:
    """A deep read-only copy of a JSON-able value (already frozen parts are reused)."""
    if isinstance(value, FrozenDict):
        return value
    if isinstance(value, Mapping):
        return FrozenDict({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A deep mutable copy of a (possibly frozen) JSON-able value."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value
