"""Collects the watchers' evaluations for a short window and writes them in one go, one
per job; mirrors nomad/deploymentwatcher/batcher.go (EvalBatcher).

Many allocations of one job turning healthy within the window cost one evaluation and
one write; the window (1 s, as Nomad's) bounds how long a rolling update waits for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("nomadpaas.agent.server.deploymentwatcher")

BATCH_WINDOW_S = 1.0


class EvalBatcher:
    """`add(eval)` from any thread; `flush` runs `write(evals)` at the end of the window."""

    def __init__(
        self, write: Callable[[Sequence[dict[str, Any]]], int], window_s: float = BATCH_WINDOW_S
    ) -> None:
        self._write = write
        self._window_s = window_s
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], dict[str, Any]] = {}
        self._timer: threading.Timer | None = None
        self._stopped = False

    def add(self, evaluation: dict[str, Any]) -> None:
        """Queue `evaluation`; a later one for the same job within the window is dropped
        (the first one already schedules the job's latest state)."""
        key = (str(evaluation["Namespace"]), str(evaluation["JobID"]))
        with self._lock:
            if self._stopped:
                return
            self._pending.setdefault(key, evaluation)
            if self._timer is None:
                self._timer = threading.Timer(self._window_s, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = list(self._pending.values()), {}
            self._timer = None
            if self._stopped:
                return
        if not batch:
            return
        try:
            self._write(batch)
        except Exception:  # the store is closing; the next health change asks again
            log.exception("deployment watcher: writing %d evaluations failed", len(batch))

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            timer, self._timer = self._timer, None
            self._pending = {}
        if timer is not None:
            timer.cancel()
