"""Go `time.Duration` text: parse and format, as Nomad's wire format needs; mirrors Go's time.

Nomad sends and accepts durations two ways: integer nanoseconds in most structs, and Go
duration strings (`"15s"`, `"1m30s"`) in a few places (the `wait` query parameter,
variable locks). These two functions are exact ports of the Go grammar so the agent
accepts and prints the same strings Nomad does.
"""

from __future__ import annotations

import re

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
NS_PER_MIN = 60 * NS_PER_S
NS_PER_HOUR = 60 * NS_PER_MIN

_UNITS_NS = {
    "ns": 1,
    "us": NS_PER_US,
    "µs": NS_PER_US,  # U+00B5 micro sign
    "μs": NS_PER_US,  # U+03BC Greek mu
    "ms": NS_PER_MS,
    "s": NS_PER_S,
    "m": NS_PER_MIN,
    "h": NS_PER_HOUR,
}
_PART = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Parse a Go duration string into nanoseconds; raise ValueError like time.ParseDuration."""
    s = text
    if s in ("0", "+0", "-0"):
        return 0
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNITS_NS[m.group(2)]
        pos = m.end()
    return sign * round(total)


def format_duration(ns: int) -> str:
    """Format nanoseconds as Go's Duration.String() does: "1h2m3.5s", "150ms", "0s"."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < NS_PER_S:
        # Sub-second values use the largest unit that keeps a non-zero integer part.
        for unit, size in (("ms", NS_PER_MS), ("µs", NS_PER_US), ("ns", 1)):
            if u >= size:
                out = _fraction(u, size) + unit
                break
    else:
        hours, rest = divmod(u, NS_PER_HOUR)
        minutes, rest = divmod(rest, NS_PER_MIN)
        out = _fraction(rest, NS_PER_S) + "s"
        if hours:
            out = f"{hours}h{minutes}m{out}"
        elif minutes:
            out = f"{minutes}m{out}"
    return "-" + out if neg else out


def _fraction(value: int, size: int) -> str:
    whole, frac = divmod(value, size)
    if not frac:
        return str(whole)
    digits = len(str(size)) - 1
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")
