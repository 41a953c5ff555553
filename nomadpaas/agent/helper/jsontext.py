"""Compact JSON text of rows quickly: one prebuilt encoder, shared members spliced in.

Used by the server's state store (`server/state/row_encoder.py`) and the client's state
DB (`client/state.py`), whose rows embed big values many rows share (an allocation's
Job): those are encoded once by their owner and their text spliced in here. The result
is byte for byte `json.dumps(row, separators=(",", ":"))`, key order included.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

__all__ = ["SHARED_ALLOC_FIELDS", "SharedTexts", "compact_encoder", "splice"]

# An allocation's members that are often one read-only object shared by many allocations:
# the embedded Job of every allocation of a job version, and the resources and metric that
# the server's plan apply shares between a group's placements (plan_apply.py,
# freeze_shared). Both the server's rows and the client's state DB splice these.
SHARED_ALLOC_FIELDS = frozenset(
    {"Job", "Resources", "SharedResources", "TaskResources", "AllocatedResources", "Metrics"}
)


def _unserializable(o: object) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def compact_encoder() -> Callable[[Any], str]:
    """`json.dumps(o, separators=(",", ":"))` without its per-call set-up.

    `JSONEncoder.encode` builds a new C encoder for every call (about 1 µs), and a
    spliced row takes a dozen calls; this one is built once. No circular-reference check:
    rows are trees."""
    make = getattr(json.encoder, "c_make_encoder", None)  # CPython's C accelerator
    if make is None:  # pragma: no cover
        return json.JSONEncoder(separators=(",", ":")).encode
    encoder = make(
        None, _unserializable, encode_basestring_ascii, None, ":", ",", False, False, True
    )

    def encode(o: Any) -> str:
        return "".join(encoder(o, 0))

    return encode


class SharedTexts:
    """The JSON text of read-only values, made once per value while remembered: keyed
    by identity (an entry holds its value, so the id is not reused while it lives), the
    oldest of `entries` dropped first. Any thread may ask: entries are only ever added
    whole or dropped, so a race costs at most an encoding twice."""

    def __init__(self, encode: Callable[[Any], str], entries: int) -> None:
        self._encode = encode
        self._entries = entries
        self._texts: dict[int, tuple[Any, str]] = {}

    def __len__(self) -> int:
        return len(self._texts)

    def text(self, value: Any) -> str:
        hit = self._texts.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        text = self._encode(value)
        if len(self._texts) >= self._entries:
            oldest = next(iter(self._texts), None)
            if oldest is not None:
                self._texts.pop(oldest, None)  # (another thread may have dropped it)
        self._texts[id(value)] = (value, text)
        return text


def splice(
    row: Mapping[str, Any],
    shared_text: Callable[[str, Any], str | None],
    encode: Callable[[Any], str],
    shared_keys: frozenset[str] = SHARED_ALLOC_FIELDS,
) -> str:
    """The row's JSON: runs of members encoded together by `encode`, and a member of
    `shared_keys` whose text `shared_text(key, value)` gives (None: not a shared value)
    spliced in as is. Only those few members are offered to `shared_text`: a call per
    member of a forty-member row would cost more than the encoding it saves."""
    parts: list[str] = []
    run: dict[str, Any] = {}
    for key, value in row.items():
        text = shared_text(key, value) if key in shared_keys else None
        if text is None:
            run[key] = value
            continue
        if run:
            parts.append(encode(run)[1:-1])  # without the braces
            run = {}
        parts.append(f"{encode_basestring_ascii(key)}:{text}")
    if run:
        parts.append(encode(run)[1:-1])
    return "{" + ",".join(parts) + "}"
