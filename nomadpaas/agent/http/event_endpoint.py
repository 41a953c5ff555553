"""`GET /v1/event/stream`: the event stream as NDJSON; mirrors
command/agent/event_endpoint.go (+ nomad/event_endpoint.go's subscribe and heartbeat).

Query: `index` (0 = the whole buffer), repeatable `topic` (`Topic` or `Topic:Key`; none
= every topic), `namespace` (default `default`, `*` = all). The body is `{}`, then one
line per matching state-store write, plus `{}` heartbeats; it ends when the client goes
away, the subscription falls too far behind, or the agent shuts down. The ACL token is
checked by the server's guard before this handler runs (403 without a valid one).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Mapping, Sequence

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from nomadpaas.agent.http.errors import ERR_INVALID_METHOD, CodedError
from nomadpaas.agent.http.server import HTTPRequest, Router
from nomadpaas.agent.server.stream.event_broker import EventBroker
from nomadpaas.agent.server.stream.ndjson import ndjson_stream
from nomadpaas.agent.server.stream.subscription import (
    SubscribeRequest,
    Subscription,
    SubscriptionClosedError,
)
from nomadpaas.agent.structs.event import TOPIC_ALL

ALL_NAMESPACES = "*"
_GO_INT = re.compile(r"^[+-]?[0-9]+$")
_INT64_MAX = 2**63 - 1


def register(router: Router) -> None:
    router.add("GET", "/v1/event/stream", event_stream)


async def event_stream(req: HTTPRequest) -> StreamingResponse:
    if req.method != "GET":  # the router lets HEAD through for GET routes; Nomad does not
        raise CodedError(405, ERR_INVALID_METHOD)
    broker = req.deps.event_broker
    if broker is None:
        raise CodedError(500, "event broker is not running")
    index = parse_index(req.query.get("index", ""))
    topics = parse_topics(req.query.getlist("topic"))
    namespace = req.namespace()
    sub = _subscribe(
        broker,
        SubscribeRequest(
            topics=topics,
            namespaces=None if namespace == ALL_NAMESPACES else frozenset({namespace}),
            index=index,
        ),
    )
    return EventStreamResponse(sub, req.deps.event_heartbeat_s)


def _subscribe(broker: EventBroker, req: SubscribeRequest) -> Subscription:
    try:
        return broker.subscribe(req)
    except SubscriptionClosedError as err:  # the agent is shutting down
        raise CodedError(500, str(err)) from None


def parse_index(raw: str) -> int:
    """`index` as Go's strconv.Atoi reads it; "" is 0; 400 with Nomad's text otherwise."""
    if raw == "":
        return 0
    if not _GO_INT.match(raw):
        reason = "invalid syntax"
    elif abs(int(raw)) > _INT64_MAX:
        reason = "value out of range"
    else:
        return max(0, int(raw))  # a negative index asks for the whole buffer
    raise CodedError(
        400, f"Unable to parse index: strconv.Atoi: parsing {json.dumps(raw)}: {reason}"
    )


def parse_topics(raw: Sequence[str]) -> Mapping[str, tuple[str, ...]]:
    """Repeated `topic` values to {topic: keys}; a bare topic means every key."""
    if not raw:
        return {TOPIC_ALL: (TOPIC_ALL,)}
    topics: dict[str, tuple[str, ...]] = {}
    for value in raw:
        parts = value.split(":")
        if len(parts) == 1:
            topic, key = value, TOPIC_ALL
        elif len(parts) == 2:
            topic, key = parts
        else:
            raise CodedError(
                400,
                "Invalid topic query: error parsing topics: "
                f"Invalid key value pair for topic, topic: {value}",
            )
        topics[topic] = (*topics.get(topic, ()), key)
    return topics


class EventStreamResponse(StreamingResponse):
    """The NDJSON body; the subscription is freed however the response ends (done,
    client gone, task cancelled at shutdown)."""

    def __init__(self, sub: Subscription, heartbeat_s: float) -> None:
        self._sub = sub
        self._body: AsyncGenerator[bytes, None] = ndjson_stream(sub, heartbeat_s)
        super().__init__(
            self._body, media_type="application/json", headers={"Cache-Control": "no-cache"}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._sub.unsubscribe()
            await self._body.aclose()
