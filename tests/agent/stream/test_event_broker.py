"""The broker and its subscriptions: topic/key/namespace filtering, replay, slow readers,
shutdown, many concurrent subscribers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping

import pytest

from nomadpaas.agent.server.stream.event_broker import EventBroker
from nomadpaas.agent.server.stream.subscription import (
    SubscribeRequest,
    SubscriptionClosedError,
    filter_events,
)
from nomadpaas.agent.structs.event import Event, Events

ALLOC = Event("Allocation", "PlanResult", "a1", "default", ("web", "d1"), 7, {})
EVAL = Event("Evaluation", "JobRegistered", "e1", "default", ("web", ""), 7, {})
JOB = Event("Job", "JobRegistered", "web", "default", None, 7, {})
JOB_PROD = Event("Job", "JobRegistered", "api", "prod", None, 7, {})
NODE = Event("Node", "NodeRegistration", "n1", "", None, 7, {})
VAR = Event("Variable", "VariableUpdated", "apps/web", "default", None, 7, {})
ALL_EVENTS = (ALLOC, EVAL, JOB, JOB_PROD, NODE, VAR)

ANY_NS = None


@pytest.mark.parametrize(
    ("topics", "namespaces", "want"),
    [
        ({"*": ("*",)}, ANY_NS, [ALLOC, EVAL, JOB, JOB_PROD, NODE, VAR]),
        # default namespace only; Node (no namespace) always passes
        ({"*": ("*",)}, frozenset({"default"}), [ALLOC, EVAL, JOB, NODE, VAR]),
        ({"*": ("*",)}, frozenset({"prod"}), [JOB_PROD, NODE]),
        ({"Job": ("*",)}, ANY_NS, [JOB, JOB_PROD]),
        ({"Job": ("web",)}, ANY_NS, [JOB]),
        # a key matches Key or any FilterKey: Allocation:web is the job's allocations
        ({"Allocation": ("web",)}, ANY_NS, [ALLOC]),
        ({"Allocation": ("d1",)}, ANY_NS, [ALLOC]),
        ({"Allocation": ("a1",)}, ANY_NS, [ALLOC]),
        ({"Allocation": ("nope",)}, ANY_NS, []),
        # keys are exact, not prefixes
        ({"Job": ("we",)}, ANY_NS, []),
        # several keys and topics
        ({"Job": ("web", "api"), "Node": ("*",)}, ANY_NS, [JOB, JOB_PROD, NODE]),
        # a wildcard key next to a specific one still matches everything of that topic
        ({"Job": ("*", "web")}, ANY_NS, [JOB, JOB_PROD]),
        # `*:key` applies the key to every topic
        ({"*": ("web",)}, ANY_NS, [ALLOC, EVAL, JOB]),
        ({"Variable": ("apps/web",)}, ANY_NS, [VAR]),
        ({"Deployment": ("*",)}, ANY_NS, []),
    ],
)
def test_filter(
    topics: Mapping[str, tuple[str, ...]], namespaces: frozenset[str] | None, want: list[Event]
) -> None:
    req = SubscribeRequest(topics=topics, namespaces=namespaces)
    assert list(filter_events(req, ALL_EVENTS)) == want


def test_filter_fn_sees_only_events_that_passed() -> None:
    seen: list[str] = []

    def fn(e: Event) -> bool:
        seen.append(e.key)
        return e.key != "web"

    req = SubscribeRequest(topics={"Job": ("*",)}, namespaces=None, filter_fn=fn)
    assert list(filter_events(req, ALL_EVENTS)) == [JOB_PROD]
    assert seen == ["web", "api"]


def job_batch(index: int, job: str = "web", ns: str = "default") -> Events:
    return Events(index, (Event("Job", "JobRegistered", job, ns, None, index, {}),))


def publish(broker: EventBroker, *indexes: int) -> None:
    for i in indexes:
        broker.publish(job_batch(i))


def drain(sub_next: object, limit: int = 1000) -> list[int]:
    out: list[int] = []
    for _ in range(limit):
        got = sub_next()  # type: ignore[operator]
        if got is None:
            return out
        out.append(got.index)
    raise AssertionError("subscription never ran dry")


@pytest.mark.parametrize(
    ("size", "published", "index", "want"),
    [
        (100, [3, 4, 5], 0, [3, 4, 5]),
        (100, [3, 4, 5], 4, [4, 5]),
        (100, [3, 4, 5], 6, []),
        (3, [1, 2, 3, 4, 5], 0, [3, 4, 5]),
        (3, [1, 2, 3, 4, 5], 1, [3, 4, 5]),
    ],
)
def test_replay(size: int, published: list[int], index: int, want: list[int]) -> None:
    broker = EventBroker(size)
    publish(broker, *published)
    sub = broker.subscribe(SubscribeRequest(index=index))
    assert drain(sub.next_no_block) == want
    publish(broker, 99)
    assert drain(sub.next_no_block) == [99]  # then live


def test_empty_batches_are_not_buffered() -> None:
    broker = EventBroker(10)
    broker.publish(Events(5, ()))
    assert len(broker) == 0


def test_batches_without_matching_events_are_skipped() -> None:
    broker = EventBroker(10)
    broker.publish(job_batch(1, "other"))
    broker.publish(job_batch(2, "web"))
    sub = broker.subscribe(SubscribeRequest(topics={"Job": ("web",)}))
    got = sub.next(timeout=1)
    assert got is not None and got.index == 2 and [e.key for e in got.events] == ["web"]
    assert sub.next(timeout=0.05) is None


def test_slow_subscriber_is_closed_and_the_writer_never_waits() -> None:
    broker = EventBroker(4)
    slow = broker.subscribe(SubscribeRequest())
    fast = broker.subscribe(SubscribeRequest())
    started = time.monotonic()
    for i in range(1, 1001):
        broker.publish(job_batch(i))
        assert fast.next_no_block() is not None
    assert time.monotonic() - started < 5
    with pytest.raises(SubscriptionClosedError, match="client should resubscribe"):
        slow.next_no_block()
    assert slow.closed and not fast.closed
    with pytest.raises(SubscriptionClosedError):
        slow.next(timeout=0)  # stays closed
    slow.unsubscribe()
    assert broker.subscriber_count == 1


def test_unsubscribe_frees_and_is_idempotent() -> None:
    broker = EventBroker()
    subs = [broker.subscribe(SubscribeRequest()) for _ in range(3)]
    assert broker.subscriber_count == 3
    subs[0].unsubscribe()
    subs[0].unsubscribe()
    assert broker.subscriber_count == 2


def test_close_ends_parked_readers_and_refuses_new_subscriptions() -> None:
    broker = EventBroker()
    sub = broker.subscribe(SubscribeRequest())
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            sub.next(timeout=30)
        except SubscriptionClosedError as err:
            errors.append(err)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.05)
    broker.close()
    t.join(5)
    assert not t.is_alive() and len(errors) == 1
    with pytest.raises(SubscriptionClosedError):
        broker.subscribe(SubscribeRequest())
    broker.publish(job_batch(1))  # ignored, no error
    assert len(broker) == 0


def test_thread_reader_times_out_with_none() -> None:
    broker = EventBroker()
    sub = broker.subscribe(SubscribeRequest())
    started = time.monotonic()
    assert sub.next(timeout=0.1) is None
    assert time.monotonic() - started >= 0.09


def test_many_async_subscribers_receive_every_batch_in_order() -> None:
    n_subs, n_batches = 20, 200
    broker = EventBroker(n_batches)  # room for everything: this test is not about drops

    async def main() -> list[list[int]]:
        subs = [broker.subscribe(SubscribeRequest(index=1)) for _ in range(n_subs)]

        async def consume(i: int) -> list[int]:
            got: list[int] = []
            while len(got) < n_batches:
                batch = await subs[i].next_async(timeout=10)
                assert batch is not None, f"subscriber {i} stalled after {got[-1:]}"
                got.append(batch.index)
            subs[i].unsubscribe()
            return got

        tasks = [asyncio.create_task(consume(i)) for i in range(n_subs)]

        def writer() -> None:
            for i in range(1, n_batches + 1):
                broker.publish(job_batch(i))

        w = threading.Thread(target=writer)
        w.start()
        out = await asyncio.gather(*tasks)
        w.join(5)
        return out

    results = asyncio.run(main())
    assert all(r == list(range(1, n_batches + 1)) for r in results)
    assert broker.subscriber_count == 0
