"""The event broker: holds the event buffer and the live subscriptions; mirrors
nomad/stream/event_broker.go.

The state store is its only publisher (server/state/events.py `attach`): `publish` runs
on the writer's thread under the write lock, appends one batch to the ring buffer and
wakes parked readers, and never waits for a subscriber. Readers pull at their own pace;
one that falls more than `buffer_size` batches behind is closed (the client
resubscribes). `close()` ends every subscription, for agent shutdown.

In-process use (a watcher thread, say)::

    sub = broker.subscribe(SubscribeRequest(topics={"Allocation": ("my-job",)},
                                            namespaces=None))
    try:
        while running:
            batch = sub.next(timeout=1.0)      # Events | None
            ...
    except SubscriptionClosedError:
        ...                                    # resubscribe from the last index seen
    finally:
        sub.unsubscribe()
"""

from __future__ import annotations

import threading

from nomadpaas.agent.server.stream.event_buffer import EventBuffer
from nomadpaas.agent.server.stream.subscription import (
    SubscribeRequest,
    Subscription,
    SubscriptionClosedError,
)
from nomadpaas.agent.structs.event import Events

DEFAULT_EVENT_BUFFER_SIZE = 100  # batches (state-store writes); Nomad's event_buffer_size


class EventBroker:
    """See the module docstring."""

    def __init__(self, buffer_size: int = DEFAULT_EVENT_BUFFER_SIZE) -> None:
        self._buffer = EventBuffer(buffer_size)
        # Guards the subscription set and serialises appends (Nomad's single writer).
        self._lock = threading.Lock()
        self._subscriptions: set[Subscription] = set()
        self._closed = False

    def publish(self, events: Events) -> None:
        """Append one write's events; empty batches are dropped, as in Nomad."""
        if not events.events or self._closed:
            return
        with self._lock:
            self._buffer.append(events)

    def subscribe(self, req: SubscribeRequest) -> Subscription:
        """A new subscription positioned by `req.index` (see SubscribeRequest).

        Raises SubscriptionClosedError once the broker is closed. The caller must call
        `unsubscribe()` when done.
        """
        with self._lock:
            if self._closed:
                raise SubscriptionClosedError()
            cursor = self._buffer.start_at(req.index)
            sub = Subscription(req, self._buffer, cursor, self._forget)
            self._subscriptions.add(sub)
        return sub

    def close(self) -> None:
        """Close every subscription and refuse new ones (agent shutdown)."""
        with self._lock:
            self._closed = True
            subs = list(self._subscriptions)
        for sub in subs:
            sub.close()
        self._buffer.wake_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def __len__(self) -> int:
        """How many batches the buffer holds now."""
        return len(self._buffer)

    def _forget(self, sub: Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(sub)
