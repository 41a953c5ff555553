"""The event stream endpoint served in-process by uvicorn over real loopback HTTP, so the
test can look inside the broker: disconnecting clients free their subscriptions, and
closing the broker ends every stream."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from agent.stream.stream_support import END, StreamReader, wait_for
from testsupport import free_port, wait_http

from nomadpaas.agent.http.routes import build_router
from nomadpaas.agent.http.server import HTTPDeps, build_app
from nomadpaas.agent.server.state.events import attach
from nomadpaas.agent.server.state.state_store import StateStore
from nomadpaas.agent.server.stream.event_broker import EventBroker
from nomadpaas.agent.server.variables_endpoint import Variables


@dataclass
class InProcess:
    url: str
    store: StateStore
    broker: EventBroker


@pytest.fixture
def served() -> Iterator[InProcess]:
    store = StateStore(None)
    broker = EventBroker(buffer_size=8)
    attach(store, broker)
    deps = HTTPDeps(
        store=store,
        variables=Variables(store),
        agent_self=dict,
        node_id="node-1",
        acl_token=None,
        event_broker=broker,
        event_heartbeat_s=30.0,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(build_router(), deps),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/status/leader")
        yield InProcess(f"http://127.0.0.1:{port}", store, broker)
    finally:
        broker.close()
        server.should_exit = True
        thread.join(15)
        store.close()


def put_var(url: str, path: str) -> None:
    assert httpx.put(f"{url}/v1/var/{path}", json={"Items": {"k": "v"}}).status_code == 200


def test_disconnecting_clients_free_their_subscriptions(served: InProcess) -> None:
    readers = [StreamReader(served.url, {"index": 0}) for _ in range(5)]
    for r in readers:
        assert r.next_line() == {}
    assert served.broker.subscriber_count == 5
    put_var(served.url, "a")
    for r in readers:
        assert r.next_data()["Events"][0]["Key"] == "a"
    for r in readers[:3]:
        r.close()
    # The server notices each disconnect at once (not at the next heartbeat, 30 s away).
    wait_for(lambda: served.broker.subscriber_count == 2, timeout=10, what="3 unsubscribes")
    put_var(served.url, "b")
    for r in readers[3:]:
        assert r.next_data()["Events"][0]["Key"] == "b"
        r.close()
    wait_for(lambda: served.broker.subscriber_count == 0, timeout=10, what="all unsubscribed")


def test_closing_the_broker_ends_every_stream(served: InProcess) -> None:
    readers = [StreamReader(served.url) for _ in range(3)]
    try:
        for r in readers:
            assert r.next_line() == {}
        served.broker.close()
        for r in readers:
            assert r.ended.wait(10)
            assert r.next_line() is END  # a clean end of body, no error
        assert served.broker.subscriber_count == 0
        # New streams are refused once the broker is closed (agent shutting down).
        assert httpx.get(f"{served.url}/v1/event/stream", timeout=10).status_code == 500
    finally:
        for r in readers:
            r.close()


def test_replay_window_is_the_buffer_size(served: InProcess) -> None:
    for i in range(12):  # buffer holds 8 writes
        put_var(served.url, f"v{i}")
    reader = StreamReader(served.url, {"index": 1})
    try:
        assert reader.next_line() == {}
        keys = [reader.next_data()["Events"][0]["Key"] for _ in range(8)]
        assert keys == [f"v{i}" for i in range(4, 12)]  # older than the buffer: oldest held
    finally:
        reader.close()
