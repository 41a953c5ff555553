"""Which hook phases a hook object implements, answered once per class; a helper of the
alloc and task runners (Nomad's runners type-switch on interfaces at compile time).

`isinstance(hook, SomeRuntimeCheckableProtocol)` walks the protocol's members on every
call (tens of microseconds); runners ask it for every hook on every phase of every
allocation. The answer depends only on the class (hooks define their phases as methods
and `name` as a class attribute), so it is cached per (class, protocol).
"""

from __future__ import annotations

from typing import Any

_CACHE: dict[tuple[type, Any], bool] = {}


def implements(obj: Any, protocol: Any) -> bool:
    """`isinstance(obj, protocol)` for a runtime-checkable protocol, cached per class."""
    key = (type(obj), protocol)
    hit = _CACHE.get(key)
    if hit is None:
        hit = _CACHE[key] = isinstance(obj, protocol)
    return hit


def hooks_of(hooks: list[Any], protocol: Any) -> list[Any]:
    """The hooks implementing `protocol`, in order (the caller annotates the list: mypy
    will not take a protocol class as a `type[T]`)."""
    return [h for h in hooks if implements(h, protocol)]
