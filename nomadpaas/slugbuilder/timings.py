"""Per-phase wall-clock timings of one build, for the build record (`timings`).

    timings = Timings()
    with timings.phase("fetch_source"):
        ...
    record["timings"] = timings.to_dict()   # {"fetch_source": 0.012, ...} in seconds

A phase entered twice adds up. Phases are named in snake_case, in the order they ran.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Timings", "process_age"]

#: Decimal places kept per phase (milliseconds).
ROUND_DIGITS = 3


class Timings:
    """Seconds spent per named phase (monotonic clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as `name` (also when it raises: a failed phase took time too)."""
        started = self._clock()
        try:
            yield
        finally:
            self.add(name, self._clock() - started)

    def add(self, name: str, seconds: float) -> None:
        self._seconds[name] = self._seconds.get(name, 0.0) + max(seconds, 0.0)

    def to_dict(self) -> dict[str, float]:
        return {name: round(s, ROUND_DIGITS) for name, s in self._seconds.items()}


def process_age() -> float | None:
    """Seconds since this process started (Linux: /proc), None where unknown.

    `starttime` in /proc/self/stat counts clock ticks since boot, the same origin as
    CLOCK_MONOTONIC there (which `time.monotonic` reads), so the difference is the age.
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        # The command name (field 2) may hold spaces; the fields after it are fixed.
        fields = stat[stat.rindex(b")") + 2 :].split()
        ticks = int(fields[19])  # field 22, starttime
        age = time.monotonic() - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return age if 0 <= age < 24 * 3600 else None
