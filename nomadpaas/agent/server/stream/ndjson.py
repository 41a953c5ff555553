"""Newline-delimited JSON for the event stream, with heartbeats; mirrors
nomad/stream/ndjson.go.

The stream opens with a `{}` line (the client knows it is connected), then sends one
`{"Index":N,"Events":[...]}` line per matching batch and another `{}` every heartbeat
interval (30 s in Nomad) on a fixed schedule, whether events flowed or not. It ends
when the subscription is closed (slow reader, agent shutdown). Blank lines are never
sent: python-nomad's reader dies on one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from nomadpaas.agent.server.stream.subscription import Subscription, SubscriptionClosedError
from nomadpaas.agent.structs.event import Events

HEARTBEAT = b"{}\n"
DEFAULT_HEARTBEAT_S = 30.0


def encode_events(events: Events) -> bytes:
    """One NDJSON line; each event's JSON is rendered once and shared by all readers."""
    body = b",".join(e.json_bytes() for e in events.events)
    return b'{"Index":%d,"Events":[%b]}\n' % (events.index, body)


async def ndjson_stream(
    sub: Subscription, heartbeat_s: float = DEFAULT_HEARTBEAT_S
) -> AsyncGenerator[bytes, None]:
    """The body of one event stream; unsubscribes when it ends or is cancelled."""
    loop = asyncio.get_running_loop()
    try:
        yield HEARTBEAT
        next_beat = loop.time() + heartbeat_s
        while True:
            now = loop.time()
            if now >= next_beat:
                yield HEARTBEAT
                # A ticker: one interval on; after a long stall, one interval from now.
                next_beat += heartbeat_s
                if next_beat <= now:
                    next_beat = now + heartbeat_s
                continue
            try:
                batch = await sub.next_async(timeout=next_beat - now)
            except SubscriptionClosedError:
                return
            if batch is not None:
                yield encode_events(batch)
    finally:
        sub.unsubscribe()
