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
from json.encoder import encode_basestring_ascii
from typing import Any

from nomadpaas.agent.helper.jsontext import SharedTexts, compact_encoder, splice
from nomadpaas.agent.server.state.frozen import FrozenDict

CACHE_ENTRIES = 64  # distinct shared values remembered (LRU by insertion)

_SEPARATORS = (",", ":")


class RowEncoder:
    """`encode(row)` → compact JSON text; not thread-safe (the store's writer owns it)."""

    def __init__(self, cache_entries: int = CACHE_ENTRIES) -> None:
        self._encode = compact_encoder()
        self._texts = SharedTexts(self._encode, cache_entries)
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

    def _splice(self, row: FrozenDict) -> str:
        """The row's members in order: runs of plain ones encoded together, shared frozen
        values from the cache."""
        return splice(row, self._shared_member, self._encode)

    def _shared_member(self, key: str, value: Any) -> str | None:
        # Asked only for SHARED_ALLOC_FIELDS members (splice).
        return self._texts.text(value) if type(value) is FrozenDict else None


_KEY_ENCODER = json.JSONEncoder(separators=_SEPARATORS)


def encode_key(key: tuple[str, ...]) -> str:
    """A row key as stored: a compact JSON array of its parts."""
    if len(key) == 1 and type(key[0]) is str:  # most keys: one ID
        return f"[{encode_basestring_ascii(key[0])}]"
    return _KEY_ENCODER.encode(list(key))
