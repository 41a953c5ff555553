"""The event buffer: a fixed-size ring of the latest published `Events`; mirrors
nomad/stream/event_buffer.go.

Design (single writer, many readers, fixed size):

- Every appended batch gets the next *sequence number* and lands in slot
  `seq % size`, overwriting the batch `size` appends older. The buffer therefore holds
  the last `size` batches (Nomad's `event_buffer_size`, counted in state-store writes),
  and memory never grows, however slow a reader is.
- A reader is just a cursor (the sequence number it wants next). It reads without
  locks: the writer fills the slot *before* it advances `next_seq`, so a sequence
  number below `next_seq` always names a filled slot, and a slot whose stored sequence
  number differs from the cursor has been overwritten: that reader fell more than
  `size` batches behind and gets `EventDroppedError` (Nomad: "event dropped from
  buffer"); the subscription then closes and the client resubscribes.
- Waking readers costs the writer one `notify_all` plus one `call_soon_threadsafe` per
  event loop that has parked readers, not one per reader, so `append` stays O(1) in
  the number of subscribers and never blocks on a reader.

Appends must be serialised by the caller (the state store's write lock already does).
"""

from __future__ import annotations

import asyncio
import threading
import time

from nomadpaas.agent.structs.event import Events


class EventDroppedError(Exception):
    """The batch a reader wanted was overwritten: the reader fell too far behind."""

    def __init__(self) -> None:
        super().__init__("event dropped from buffer")


class EventBuffer:
    """See the module docstring. `size` is the number of batches kept (>= 1)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"event buffer size must be at least 1, got {size}")
        self.size = size
        self._slots: list[tuple[int, Events] | None] = [None] * size
        self._next_seq = 0  # the sequence number the next append gets
        self._generation = 0  # bumped by wake_all: parked readers re-check their state
        self._cond = threading.Condition(threading.Lock())
        self._async_waiters: dict[asyncio.AbstractEventLoop, set[asyncio.Future[None]]] = {}

    # -- writer ------------------------------------------------------------------------

    def append(self, events: Events) -> None:
        """Add one batch (evicting the oldest when full) and wake every parked reader."""
        seq = self._next_seq
        self._slots[seq % self.size] = (seq, events)  # fill first, then publish the seq
        self._wake(next_seq=seq + 1)

    def wake_all(self) -> None:
        """Wake every parked reader without appending (a subscription was closed)."""
        self._wake(bump_generation=True)

    def _wake(self, *, next_seq: int | None = None, bump_generation: bool = False) -> None:
        with self._cond:
            if next_seq is not None:
                self._next_seq = next_seq
            if bump_generation:
                self._generation += 1
            waiting = self._async_waiters
            self._async_waiters = {}
            self._cond.notify_all()
        for loop, futures in waiting.items():
            try:
                # One callback per loop, however many readers are parked on it.
                loop.call_soon_threadsafe(_resolve_all, futures)
            except RuntimeError:  # that loop is closed: nobody left to wake
                pass

    # -- readers -----------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def oldest_seq(self) -> int:
        """The sequence number of the oldest batch still held."""
        return max(0, self._next_seq - self.size)

    def __len__(self) -> int:
        return self._next_seq - self.oldest_seq

    def get(self, seq: int) -> Events | None:
        """The batch at `seq`; None if not published yet; EventDroppedError if evicted."""
        if seq >= self._next_seq:
            return None
        item = self._slots[seq % self.size]
        if item is None or item[0] != seq:
            raise EventDroppedError()
        return item[1]

    def start_at(self, index: int) -> int:
        """The cursor for a subscription asking for raft `index`.

        0 means the whole buffer; otherwise the first held batch whose index is >= `index`
        (so `index` itself is included, and an index older than the buffer starts at the
        oldest batch held); past the newest batch, the next batch to be published.
        """
        end = self._next_seq
        start = max(0, end - self.size)
        if index <= 0:
            return start
        for seq in range(start, end):
            item = self._slots[seq % self.size]
            if item is not None and item[0] == seq and item[1].index >= index:
                return seq
        return end

    def wait(self, seq: int, generation: int, timeout: float | None) -> None:
        """From a thread: park until batch `seq` exists, wake_all runs, or `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._next_seq <= seq and self._generation == generation:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                self._cond.wait(remaining)

    async def wait_async(self, seq: int, generation: int, timeout: float | None) -> None:
        """`wait` for asyncio: parks a future, never a thread."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._next_seq > seq or self._generation != generation:
                return
            self._async_waiters.setdefault(loop, set()).add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return
        finally:
            with self._cond:
                waiters = self._async_waiters.get(loop)
                if waiters is not None:
                    waiters.discard(fut)

    @property
    def generation(self) -> int:
        return self._generation


def _resolve_all(futures: set[asyncio.Future[None]]) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_result(None)
