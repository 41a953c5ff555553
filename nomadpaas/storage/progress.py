"""ProgressCounter: per-chunk byte counts in, `on_progress(bytes_so_far, total)` calls out."""

from __future__ import annotations

import threading

from nomadpaas.storage.base import ProgressCallback

__all__ = ["ProgressCounter"]


class ProgressCounter:
    """Sums per-chunk byte counts (boto3's transfer callbacks) into `on_progress` calls.

    boto3 calls back from its worker threads, and with a negative count when it rewinds
    a retried part, so the running total is locked and clamped to [0, total].
    """

    def __init__(self, on_progress: ProgressCallback | None, total: int) -> None:
        self._on_progress = on_progress
        self._total = total
        self._so_far = 0
        self._lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self._lock:
            self._so_far = min(self._total, max(0, self._so_far + n))
            if self._on_progress is not None:
                self._on_progress(self._so_far, self._total)

    def finish(self) -> None:
        """Report completion once more when boto3's counts fell short (e.g. empty files)."""
        with self._lock:
            if self._so_far != self._total and self._on_progress is not None:
                self._so_far = self._total
                self._on_progress(self._total, self._total)
