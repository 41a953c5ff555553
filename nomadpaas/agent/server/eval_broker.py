"""The eval broker: a priority queue of pending evaluations with at most one in flight
per job, ack/nack with redelivery, and delayed evaluations; mirrors nomad/eval_broker.go.

- `enqueue(eval)`: an eval whose `WaitUntil` is in the future waits in the delay heap;
  otherwise it is ready, unless another eval of the same job is ready or unacked: then it
  waits in that job's pending list (evaluations of one job never run concurrently).
- `dequeue(timeout)` hands out the highest-priority ready eval (oldest first among
  equals) with a token; the worker must `ack` or `nack` it.
- `ack` frees the job: its oldest pending eval becomes ready. `nack` redelivers after a
  short delay (`NACK_DELAYS_S`), up to `DELIVERY_LIMIT` deliveries; past that it returns
  False and the caller marks the evaluation failed.
Delayed and nacked evals are promoted by whoever calls `dequeue` (workers poll with a
timeout), so the broker needs no timer thread. Thread-safe; never touches the store.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nomadpaas.agent.structs.alloc import rfc3339_to_ns

DELIVERY_LIMIT = 3  # deliveries before an eval is given up as failed (Nomad: 3)
NACK_DELAYS_S = (1.0, 5.0)  # redelivery delay after the 1st nack, then after later ones

Eval = Any  # a frozen Evaluation row
JobKey = tuple[str, str]  # (namespace, job_id)


@dataclass(order=True)
class _Ready:
    neg_priority: int
    create_index: int
    seq: int
    eval: Eval = field(compare=False)


@dataclass
class BrokerStats:
    ready: int
    unacked: int
    pending: int
    delayed: int


class EvalBroker:
    """See the module docstring. `wall_ns` and `mono_s` are clocks, injectable for tests."""

    def __init__(
        self,
        *,
        wall_ns: Callable[[], int] = time.time_ns,
        mono_s: Callable[[], float] = time.monotonic,
        nack_delays_s: tuple[float, float] = NACK_DELAYS_S,
        delivery_limit: int = DELIVERY_LIMIT,
    ) -> None:
        self._wall_ns = wall_ns
        self._mono_s = mono_s
        self._nack_delays_s = nack_delays_s
        self._delivery_limit = delivery_limit
        self._cond = threading.Condition()
        self._enabled = False
        self._seq = itertools.count()
        self._known: set[str] = set()  # every eval ID the broker holds, in any queue
        self._ready: list[_Ready] = []
        self._unacked: dict[str, tuple[Eval, str]] = {}  # eval ID → (eval, token)
        self._job_slot: dict[JobKey, str] = {}  # job → the eval ID ready or in flight
        self._pending: dict[JobKey, list[_Ready]] = {}
        self._delayed: list[tuple[int, int, Eval]] = []  # (WaitUntil ns, seq, eval)
        self._nacked: list[tuple[float, int, Eval]] = []  # (redeliver at mono s, seq, eval)
        self._deliveries: dict[str, int] = {}

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._enabled

    def set_enabled(self, enabled: bool) -> None:
        """Disabling flushes every queue and wakes waiting workers."""
        with self._cond:
            self._enabled = enabled
            if not enabled:
                self._known.clear()
                self._ready.clear()
                self._unacked.clear()
                self._job_slot.clear()
                self._pending.clear()
                self._delayed.clear()
                self._nacked.clear()
                self._deliveries.clear()
            self._cond.notify_all()

    def stats(self) -> BrokerStats:
        with self._cond:
            pending = sum(len(p) for p in self._pending.values())
            return BrokerStats(len(self._ready), len(self._unacked), pending, len(self._delayed))

    # -- enqueue / dequeue ---------------------------------------------------------------

    def enqueue(self, evaluation: Eval) -> None:
        """Queue an evaluation (ignored when disabled or already held)."""
        with self._cond:
            if not self._enabled or evaluation["ID"] in self._known:
                return
            self._known.add(evaluation["ID"])
            wait_until = rfc3339_to_ns(evaluation.get("WaitUntil"))
            if wait_until > self._wall_ns():
                heapq.heappush(self._delayed, (wait_until, next(self._seq), evaluation))
                self._cond.notify_all()  # a sleeping dequeue may need to wake earlier
                return
            self._make_ready(evaluation)

    def _entry(self, evaluation: Eval) -> _Ready:
        return _Ready(
            -int(evaluation.get("Priority") or 0),
            int(evaluation.get("CreateIndex") or 0),
            next(self._seq),
            evaluation,
        )

    def _make_ready(self, evaluation: Eval) -> None:
        job: JobKey = (evaluation["Namespace"], evaluation["JobID"])
        slot = self._job_slot.get(job)
        if slot is not None and slot != evaluation["ID"]:
            heapq.heappush(self._pending.setdefault(job, []), self._entry(evaluation))
            return
        self._job_slot[job] = evaluation["ID"]
        heapq.heappush(self._ready, self._entry(evaluation))
        self._cond.notify_all()

    def _promote_due(self) -> float | None:
        """Move due delayed/nacked evals to ready; seconds until the next one is due."""
        now_ns, now_s = self._wall_ns(), self._mono_s()
        while self._delayed and self._delayed[0][0] <= now_ns:
            self._make_ready(heapq.heappop(self._delayed)[2])
        while self._nacked and self._nacked[0][0] <= now_s:
            self._make_ready(heapq.heappop(self._nacked)[2])
        waits = []
        if self._delayed:
            waits.append((self._delayed[0][0] - now_ns) / 1e9)
        if self._nacked:
            waits.append(self._nacked[0][0] - now_s)
        return max(min(waits), 0.0) if waits else None

    def dequeue(self, timeout_s: float) -> tuple[Eval, str] | None:
        """The next ready eval and its token, or None after `timeout_s` (or when disabled)."""
        deadline = self._mono_s() + timeout_s
        with self._cond:
            while True:
                if not self._enabled:
                    return None
                next_due = self._promote_due()
                if self._ready:
                    entry = heapq.heappop(self._ready)
                    token = str(uuid.uuid4())
                    eval_id = entry.eval["ID"]
                    self._unacked[eval_id] = (entry.eval, token)
                    self._deliveries[eval_id] = self._deliveries.get(eval_id, 0) + 1
                    return entry.eval, token
                remaining = deadline - self._mono_s()
                if remaining <= 0:
                    return None
                wait = remaining if next_due is None else min(remaining, next_due)
                self._cond.wait(max(wait, 0.001))

    # -- ack / nack ----------------------------------------------------------------------

    def _take_unacked(self, eval_id: str, token: str) -> Eval:
        held = self._unacked.get(eval_id)
        if held is None:
            raise KeyError(f"Evaluation ID not found: {eval_id}")
        if held[1] != token:
            raise ValueError("Token does not match for Evaluation ID")
        del self._unacked[eval_id]
        return held[0]

    def ack(self, eval_id: str, token: str) -> None:
        """The eval is done: forget it and let the job's next pending eval run."""
        with self._cond:
            evaluation = self._take_unacked(eval_id, token)
            self._release(evaluation)

    def _release(self, evaluation: Eval) -> None:
        eval_id = evaluation["ID"]
        self._known.discard(eval_id)
        self._deliveries.pop(eval_id, None)
        job: JobKey = (evaluation["Namespace"], evaluation["JobID"])
        if self._job_slot.get(job) == eval_id:
            del self._job_slot[job]
        pending = self._pending.get(job)
        if pending:
            nxt = heapq.heappop(pending)
            if not pending:
                del self._pending[job]
            self._make_ready(nxt.eval)

    def nack(self, eval_id: str, token: str) -> bool:
        """Redeliver later; False when the delivery limit is reached (the eval is dropped)."""
        with self._cond:
            evaluation = self._take_unacked(eval_id, token)
            deliveries = self._deliveries.get(eval_id, 0)
            if deliveries >= self._delivery_limit:
                self._release(evaluation)
                return False
            delay = self._nack_delays_s[0] if deliveries <= 1 else self._nack_delays_s[1]
            heapq.heappush(self._nacked, (self._mono_s() + delay, next(self._seq), evaluation))
            self._cond.notify_all()
            return True

    def outstanding(self, eval_id: str) -> bool:
        """True while the eval is handed out and not yet acked or nacked."""
        with self._cond:
            return eval_id in self._unacked
