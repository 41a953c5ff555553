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
# (the hooks' classes, the protocols) -> for each protocol the positions of its hooks.
# Runners build their hook lists from a handful of factories, so a few keys serve every
# allocation; the cap only guards against a caller minting classes at run time.
_SPLIT_CACHE: dict[tuple[tuple[type, ...], tuple[Any, ...]], tuple[tuple[int, ...], ...]] = {}
_SPLIT_CACHE_MAX = 256


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
    return split_hooks(hooks, protocol)[0]


def split_hooks(hooks: list[Any], *protocols: Any) -> list[list[Any]]:
    """For each protocol the hooks implementing it, in order: what `hooks_of` answers for
    each, decided once per sequence of hook classes instead of per hook and protocol
    (a runner asks for all its phases at once, on every allocation)."""
    key = (tuple(map(type, hooks)), protocols)
    picks = _SPLIT_CACHE.get(key)
    if picks is None:
        if len(_SPLIT_CACHE) >= _SPLIT_CACHE_MAX:
            _SPLIT_CACHE.clear()
        picks = _SPLIT_CACHE[key] = tuple(
            tuple(i for i, hook in enumerate(hooks) if implements(hook, protocol))
            for protocol in protocols
        )
    return [[hooks[i] for i in pick] for pick in picks]
