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

__all__ = ["compact_encoder", "splice"]


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


def splice(
    row: Mapping[str, Any],
    shared_text: Callable[[str, Any], str | None],
    encode: Callable[[Any], str],
) -> str:
    """The row's JSON: runs of members encoded together by `encode`, and a member whose
    text `shared_text(key, value)` gives (None: not a shared one) spliced in as is."""
    parts: list[str] = []
    run: dict[str, Any] = {}
    for key, value in row.items():
        text = shared_text(key, value)
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
