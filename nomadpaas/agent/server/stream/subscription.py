"""One subscriber's view of the event buffer: a cursor plus its topic/namespace filter;
mirrors nomad/stream/subscription.go.

`next()` (threads) and `await next_async()` (asyncio) return the next batch that has at
least one matching event, or None when the timeout passes first. A subscription closed
by the server (it fell more than the buffer's size behind, or the broker shut down)
raises `SubscriptionClosedError` from then on: the client should unsubscribe and
subscribe again, from the last index it saw.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from nomadpaas.agent.server.stream.event_buffer import EventBuffer, EventDroppedError
from nomadpaas.agent.structs.event import TOPIC_ALL, Event, Events

ERR_SUBSCRIPTION_CLOSED = "subscription closed by server, client should resubscribe"
ALL_TOPICS: Mapping[str, tuple[str, ...]] = {TOPIC_ALL: (TOPIC_ALL,)}


class SubscriptionClosedError(Exception):
    """stream.ErrSubscriptionClosed: unsubscribe, then subscribe again."""

    def __init__(self) -> None:
        super().__init__(ERR_SUBSCRIPTION_CLOSED)


@dataclass(frozen=True)
class SubscribeRequest:
    """What to receive (stream.SubscribeRequest).

    `topics` maps a topic (or `*`) to keys (`*` = every key); a key matches an event's
    Key or any of its FilterKeys exactly. `namespaces` None means every namespace;
    events without a namespace (Node) pass any namespace filter. `index` 0 replays the
    whole buffer; N starts at the first held batch whose index is >= N. `filter_fn`, if
    given, sees each event that passed the other filters (an ACL check, say).
    """

    topics: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(ALL_TOPICS))
    namespaces: frozenset[str] | None = frozenset({"default"})
    index: int = 0
    filter_fn: Callable[[Event], bool] | None = None


class Subscription:
    """See the module docstring. Made by `EventBroker.subscribe`, never directly."""

    def __init__(
        self,
        req: SubscribeRequest,
        buffer: EventBuffer,
        cursor: int,
        unsub: Callable[[Subscription], None],
    ) -> None:
        self.req = req
        self._buffer = buffer
        self._cursor = cursor  # the buffer sequence number to read next
        self._unsub = unsub
        self._closed = False
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._closed

    def next_no_block(self) -> Events | None:
        """The next matching batch already in the buffer, else None."""
        while True:
            batch = self._read()
            if batch is None:
                return None
            if batch.events:
                return batch

    def next(self, timeout: float | None = None) -> Events | None:
        """From a thread: the next matching batch; None after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            generation = self._buffer.generation
            batch = self.next_no_block()
            if batch is not None:
                return batch
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self._buffer.wait(self._cursor, generation, remaining)

    async def next_async(self, timeout: float | None = None) -> Events | None:
        """`next` for asyncio: parks on the event loop, never a thread."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            generation = self._buffer.generation
            batch = self.next_no_block()
            if batch is not None:
                return batch
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            await self._buffer.wait_async(self._cursor, generation, remaining)

    def unsubscribe(self) -> None:
        """Stop the subscription and free it at the broker; safe to call twice."""
        self.close()
        self._unsub(self)

    def close(self) -> None:
        """Server side: end the subscription; its reader gets SubscriptionClosedError."""
        if not self._closed:
            self._closed = True
            self._buffer.wake_all()

    def _read(self) -> Events | None:
        """Advance past one batch: the filtered batch (maybe empty), or None if none yet."""
        if self._closed:
            raise SubscriptionClosedError()
        with self._lock:  # one reader at a time moves the cursor
            try:
                batch = self._buffer.get(self._cursor)
            except EventDroppedError:
                self._closed = True
                raise SubscriptionClosedError() from None
            if batch is None:
                return None
            self._cursor += 1
        return Events(batch.index, filter_events(self.req, batch.events))


def filter_events(req: SubscribeRequest, events: tuple[Event, ...]) -> tuple[Event, ...]:
    """The events `req` wants, in order (stream.filter)."""
    return tuple(e for e in events if _wanted(req, e))


def _wanted(req: SubscribeRequest, event: Event) -> bool:
    if event.namespace and req.namespaces is not None and event.namespace not in req.namespaces:
        return False
    keys = (*req.topics.get(TOPIC_ALL, ()), *req.topics.get(event.topic, ()))
    if not _matches(event, keys):
        return False
    return req.filter_fn is None or req.filter_fn(event)


def _matches(event: Event, keys: tuple[str, ...]) -> bool:
    """`*` matches everything; any other key must equal the Key or one FilterKey."""
    if TOPIC_ALL in keys or event.key in keys:
        return True
    return any(k in keys for k in event.filter_keys or ())
