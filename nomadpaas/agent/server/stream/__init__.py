"""The event stream machinery: broker, ring buffer, subscriptions, NDJSON; mirrors
nomad/stream. Events come only from committed writes (server/state/events.py)."""

from nomadpaas.agent.server.stream.event_broker import DEFAULT_EVENT_BUFFER_SIZE, EventBroker
from nomadpaas.agent.server.stream.ndjson import DEFAULT_HEARTBEAT_S, ndjson_stream
from nomadpaas.agent.server.stream.subscription import (
    SubscribeRequest,
    Subscription,
    SubscriptionClosedError,
)

__all__ = [
    "DEFAULT_EVENT_BUFFER_SIZE",
    "DEFAULT_HEARTBEAT_S",
    "EventBroker",
    "SubscribeRequest",
    "Subscription",
    "SubscriptionClosedError",
    "ndjson_stream",
]
