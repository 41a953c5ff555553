"""Query-string parsing with Go semantics: booleans, blocking-query `index`/`wait`;
mirrors command/agent/http.go's parse, parseWait, parseBool.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from nomadpaas.agent.http.errors import ERR_INVALID_INDEX, ERR_INVALID_WAIT, CodedError
from nomadpaas.agent.structs.duration import NS_PER_S, parse_duration

# Nomad's MaxBlockingRPCQueryTime and DefaultBlockingRPCQueryTime are both 300 s.
MAX_BLOCKING_WAIT_S = 300.0
DEFAULT_BLOCKING_WAIT_S = 300.0
JITTER_FRACTION = 16  # up to wait/16 extra, so parked clients do not all wake together

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_UINT64_MAX = 2**64 - 1


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool; ValueError for anything else."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def query_bool(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    """A boolean query parameter; a bad value is a 500, as in Nomad (`purge`, `global`)."""
    value = query.get(name)
    if value is None:
        return default
    try:
        return parse_bool(value)
    except ValueError as exc:
        raise CodedError(
            500, f"Failed to parse value of {name!r} ({value}) as a bool: {exc}"
        ) from exc


def parse_uint(text: str) -> int:
    """Go's strconv.ParseUint(s, 10, 64)."""
    if not text.isascii() or not text.isdigit() or int(text) > _UINT64_MAX:
        raise ValueError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    return int(text)


@dataclass(frozen=True)
class BlockingOptions:
    """`?index=&wait=`: block until the result's index passes `min_index`."""

    min_index: int
    wait_s: float  # already capped and jittered

    @property
    def blocking(self) -> bool:
        return self.min_index > 0


def parse_blocking(query: Mapping[str, str]) -> BlockingOptions:
    """Parse `index` and `wait`; 400 `Invalid wait time` / `Invalid index` on bad input."""
    wait_s = DEFAULT_BLOCKING_WAIT_S
    raw_wait = query.get("wait")
    if raw_wait is not None:
        try:
            ns = parse_duration(raw_wait)
        except ValueError as exc:
            raise CodedError(400, ERR_INVALID_WAIT) from exc
        wait_s = ns / NS_PER_S if ns > 0 else DEFAULT_BLOCKING_WAIT_S
    wait_s = min(wait_s, MAX_BLOCKING_WAIT_S)
    wait_s += random.uniform(0, wait_s / JITTER_FRACTION)
    min_index = 0
    raw_index = query.get("index")
    if raw_index is not None:
        try:
            min_index = parse_uint(raw_index)
        except ValueError as exc:
            raise CodedError(400, ERR_INVALID_INDEX) from exc
    return BlockingOptions(min_index, wait_s)
