"""A change index with waiters: the registry's version counter that blocking readers
wait on (threads and asyncio alike) and subscribers hear about; mirrors the role of
Consul's and Nomad's watch sets over the state store index.

`bump()` moves the index (callers hold their own lock, so the index and their data move
together); `notify()` then wakes every waiter and calls every subscriber — outside the
caller's lock, so a subscriber may read the registry.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("nomadpaas.agent.client.serviceregistration")


class ChangeIndex:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._index = 1  # never 0: blocking clients send it back and would never block
        self._async_waiters: dict[asyncio.AbstractEventLoop, set[asyncio.Future[None]]] = {}
        self._subscribers: list[Callable[[int], None]] = []
        self._closed = False

    @property
    def index(self) -> int:
        return self._index

    def bump(self) -> int:
        with self._cond:
            self._index += 1
            return self._index

    def close(self) -> None:
        """Every parked and future wait returns at once (shutdown)."""
        with self._cond:
            self._closed = True
        self._wake()

    def notify(self) -> None:
        """Wake the waiters, then call the subscribers with the current index."""
        self._wake()
        with self._cond:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(self._index)
            except Exception:
                log.exception("change subscriber failed")

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """`callback(index)` after every change; returns an unsubscribe."""
        with self._cond:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._cond:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def wait(self, min_index: int, timeout_s: float) -> int:
        """From a thread: block until `index > min_index` or the timeout; returns index."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._index <= min_index and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._index

    async def wait_async(self, min_index: int, timeout_s: float) -> int:
        """`wait` for asyncio: parks a future on the caller's loop, not a thread."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._index > min_index or self._closed:
                return self._index
            self._async_waiters.setdefault(loop, set()).add(fut)
        try:
            await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            pass
        finally:
            with self._cond:
                waiters = self._async_waiters.get(loop)
                if waiters is not None:
                    waiters.discard(fut)
        return self._index

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
            waiting, self._async_waiters = self._async_waiters, {}
        for loop, futures in waiting.items():
            try:
                loop.call_soon_threadsafe(_resolve_all, futures)
            except RuntimeError:  # that loop is closed
                pass


def _resolve_all(futures: set[asyncio.Future[None]]) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_result(None)
