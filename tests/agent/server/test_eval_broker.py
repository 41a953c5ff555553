"""Eval broker: priority order, one eval in flight per job, ack/nack redelivery and the
delivery limit, delayed (WaitUntil) evals, disable flushes."""

from __future__ import annotations

from typing import Any

import pytest

from nomadpaas.agent.server.eval_broker import EvalBroker
from nomadpaas.agent.structs.alloc import ns_to_rfc3339


class Clock:
    def __init__(self) -> None:
        self.wall_ns = 1_700_000_000 * 10**9
        self.mono_s = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall_ns += int(seconds * 10**9)
        self.mono_s += seconds


def ev(eval_id: str, job: str = "j", priority: int = 50, index: int = 1, **over: Any) -> Any:
    return {
        "ID": eval_id, "Namespace": "default", "JobID": job, "Priority": priority,
        "CreateIndex": index, "WaitUntil": "0001-01-01T00:00:00Z", **over,
    }  # fmt: skip


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def broker(clock: Clock) -> EvalBroker:
    b = EvalBroker(wall_ns=lambda: clock.wall_ns, mono_s=lambda: clock.mono_s)
    b.set_enabled(True)
    return b


def take(broker: EvalBroker) -> tuple[str, str]:
    item = broker.dequeue(0)
    assert item is not None, "expected a ready eval"
    return item[0]["ID"], item[1]


def test_dequeue_orders_by_priority_then_age(broker: EvalBroker) -> None:
    broker.enqueue(ev("low", job="a", priority=10, index=1))
    broker.enqueue(ev("high-new", job="b", priority=90, index=5))
    broker.enqueue(ev("high-old", job="c", priority=90, index=2))
    assert [take(broker)[0] for _ in range(3)] == ["high-old", "high-new", "low"]
    assert broker.dequeue(0) is None


def test_second_eval_of_a_job_waits_until_the_first_is_acked(broker: EvalBroker) -> None:
    broker.enqueue(ev("e1", index=1))
    broker.enqueue(ev("e2", index=2))
    first, token = take(broker)
    assert first == "e1"
    assert broker.dequeue(0) is None, "e2 must not run while e1 is in flight"
    assert broker.stats().pending == 1
    broker.ack(first, token)
    assert take(broker)[0] == "e2"


def test_enqueue_ignores_an_eval_already_held(broker: EvalBroker) -> None:
    broker.enqueue(ev("e1"))
    broker.enqueue(ev("e1"))
    take(broker)
    assert broker.dequeue(0) is None


def test_nack_redelivers_after_delay_then_gives_up(broker: EvalBroker, clock: Clock) -> None:
    broker.enqueue(ev("e1"))
    eval_id, token = take(broker)
    assert broker.nack(eval_id, token) is True
    assert broker.dequeue(0) is None, "redelivery waits for the nack delay"
    clock.advance(1.1)
    eval_id, token = take(broker)
    assert broker.nack(eval_id, token) is True
    clock.advance(5.1)
    eval_id, token = take(broker)
    assert broker.nack(eval_id, token) is False, "the third delivery is the last"
    clock.advance(10)
    assert broker.dequeue(0) is None


def test_ack_with_wrong_token_is_refused(broker: EvalBroker) -> None:
    broker.enqueue(ev("e1"))
    eval_id, _ = take(broker)
    with pytest.raises(ValueError):
        broker.ack(eval_id, "not-the-token")
    with pytest.raises(KeyError):
        broker.ack("unknown", "t")


def test_delayed_eval_becomes_ready_at_wait_until(broker: EvalBroker, clock: Clock) -> None:
    later = ns_to_rfc3339(clock.wall_ns + 30 * 10**9)
    broker.enqueue(ev("later", WaitUntil=later))
    assert broker.dequeue(0) is None
    assert broker.stats().delayed == 1
    clock.advance(31)
    assert take(broker)[0] == "later"


def test_disable_flushes_and_refuses_work(broker: EvalBroker) -> None:
    broker.enqueue(ev("e1"))
    broker.set_enabled(False)
    assert broker.dequeue(0) is None
    broker.enqueue(ev("e2"))
    broker.set_enabled(True)
    assert broker.dequeue(0) is None, "nothing enqueued while disabled survives"


def test_dequeue_waits_for_an_enqueue_from_another_thread(clock: Clock) -> None:
    import threading
    import time

    broker = EvalBroker()
    broker.set_enabled(True)
    timer = threading.Timer(0.2, broker.enqueue, args=(ev("e1"),))
    timer.start()
    started = time.monotonic()
    item = broker.dequeue(10)
    timer.join()
    assert item is not None and item[0]["ID"] == "e1"
    assert time.monotonic() - started < 5
