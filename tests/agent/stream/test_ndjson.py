"""The NDJSON body: first line, event lines, heartbeats, end on close."""

from __future__ import annotations

import asyncio
import json

from nomadpaas.agent.server.stream.event_broker import EventBroker
from nomadpaas.agent.server.stream.ndjson import HEARTBEAT, encode_events, ndjson_stream
from nomadpaas.agent.server.stream.subscription import SubscribeRequest
from nomadpaas.agent.structs.event import Event, Events


def job_batch(index: int) -> Events:
    return Events(
        index, (Event("Job", "JobRegistered", "web", "default", None, index, {"Job": {"ID": "w"}}),)
    )


def test_encode_events_is_one_json_line() -> None:
    line = encode_events(job_batch(7))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "Index": 7,
        "Events": [
            {
                "Topic": "Job",
                "Type": "JobRegistered",
                "Key": "web",
                "Namespace": "default",
                "FilterKeys": None,
                "Index": 7,
                "Payload": {"Job": {"ID": "w"}},
            }
        ],
    }


def test_stream_heartbeats_events_and_ends_on_close() -> None:
    broker = EventBroker()
    broker.publish(job_batch(3))
    sub = broker.subscribe(SubscribeRequest())

    async def main() -> list[bytes]:
        body = ndjson_stream(sub, heartbeat_s=0.1)
        lines = [await body.__anext__(), await body.__anext__()]  # `{}`, then the replay
        while len(lines) < 5:  # heartbeats keep coming with no events
            lines.append(await asyncio.wait_for(body.__anext__(), 5))
        broker.close()
        rest = [line async for line in body]
        return lines + rest

    lines = asyncio.run(main())
    assert lines[0] == HEARTBEAT
    assert json.loads(lines[1])["Index"] == 3
    assert lines[2:5] == [HEARTBEAT] * 3
    assert all(line == HEARTBEAT for line in lines[5:])
    assert broker.subscriber_count == 0  # the stream unsubscribed on its way out


def test_cancelled_stream_unsubscribes() -> None:
    broker = EventBroker()
    sub = broker.subscribe(SubscribeRequest())

    async def main() -> None:
        body = ndjson_stream(sub, heartbeat_s=30)
        assert await body.__anext__() == HEARTBEAT
        task = asyncio.create_task(body.__anext__())
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert broker.subscriber_count == 0
