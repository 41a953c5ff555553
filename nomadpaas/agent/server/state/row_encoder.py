"""JSON text of state-store rows for the persistence layer, with the big frozen values
many rows share (an allocation's embedded Job) encoded once; supports persistence.py
(Nomad's raft log stores msgpack; this is only the cost of our JSON rows).

Every allocation of a job version embeds the same frozen Job row, more than half of the
allocation's JSON, and the placements of a group share their frozen resources and metric.
A 1,000-allocation start writes each allocation three times (placed, pending, running),
so the Job alone was encoded 3,000 times. Frozen values never change, so the text of one
is cached by identity (the cache holds the object, so its id is not reused) and spliced
in. The result is byte-for-byte what `json.dumps(row, separators=(",", ":"))`
gives, key order included.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from nomadpaas.agent.server.state.frozen import FrozenDict

# CPython's C accelerator (typeshed does not declare it); None without it, as for `json`.
c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)

# Top-level row fields whose value is often one frozen object shared by many rows: the
# embedded Job of every allocation of a job version, and the resources and metric that
# plan apply shares between the placements of a group (plan_apply.py, freeze_shared).
SHARED_FIELDS = frozenset(
    {"Job", "Resources", "SharedResources", "TaskResources", "AllocatedResources", "Metrics"}
)
CACHE_ENTRIES = 64  # distinct shared values remembered (LRU by insertion)

_SEPARATORS = (",", ":")


def _unserializable(o: object) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def compact_encoder() -> Callable[[Any], str]:
    """`json.dumps(o, separators=(",", ":"))` without its per-call setup.

    `JSONEncoder.encode` builds a new C encoder for every call (about 1 µs), and a
    spliced row takes a dozen calls; this one is built once. No circular-reference check:
    rows are trees (frozen values cannot be made into cycles)."""
    if c_make_encoder is None:  # pragma: no cover
        return json.JSONEncoder(separators=_SEPARATORS).encode
    encoder = c_make_encoder(
        None, _unserializable, encode_basestring_ascii, None, ":", ",", False, False, True
    )

    def encode(o: Any) -> str:
        return "".join(encoder(o, 0))

    return encode


class RowEncoder:
    """`encode(row)` → compact JSON text; not thread-safe (the store's writer owns it)."""

    def __init__(self, cache_entries: int = CACHE_ENTRIES) -> None:
        self._encode = compact_encoder()
        self._cache: dict[int, tuple[Any, str]] = {}
        self._cache_entries = cache_entries
        # Embedded Jobs met once (id → Job): a row is spliced only when its Job is met
        # again, so rows that share nothing (read back after a restart, each with its own
        # copies) are encoded in one piece, as fast as plain json.
        self._seen: dict[int, Any] = {}

    def encode(self, row: Any) -> str:
        if type(row) is FrozenDict:
            job = row.get("Job")
            if type(job) is FrozenDict and self._met_before(job):
                return self._splice(row)
        return self._encode(row)

    def _met_before(self, job: FrozenDict) -> bool:
        if self._seen.get(id(job)) is job:
            return True
        if len(self._seen) >= self._cache_entries:
            del self._seen[next(iter(self._seen))]  # oldest first
        self._seen[id(job)] = job
        return False

    def shared(self, value: FrozenDict) -> str:
        """The cached text of one shared frozen value."""
        hit = self._cache.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        text = self._encode(value)
        if len(self._cache) >= self._cache_entries:
            del self._cache[next(iter(self._cache))]  # oldest first
        self._cache[id(value)] = (value, text)
        return text

    def _splice(self, row: FrozenDict) -> str:
        """The row's members in order: runs of plain ones encoded together, shared frozen
        values from the cache."""
        encode = self._encode
        parts: list[str] = []
        run: dict[str, Any] = {}
        for k, v in row.items():
            if k in SHARED_FIELDS and type(v) is FrozenDict:
                if run:
                    parts.append(encode(run)[1:-1])  # drop the braces
                    run = {}
                parts.append(f"{encode_basestring_ascii(k)}:{self.shared(v)}")
            else:
                run[k] = v
        if run:
            parts.append(encode(run)[1:-1])
        return "{" + ",".join(parts) + "}"


_KEY_ENCODER = json.JSONEncoder(separators=_SEPARATORS)


def encode_key(key: tuple[str, ...]) -> str:
    """A row key as stored: a compact JSON array of its parts."""
    if len(key) == 1 and type(key[0]) is str:  # most keys: one ID
        return f"[{encode_basestring_ascii(key[0])}]"
    return _KEY_ENCODER.encode(list(key))
