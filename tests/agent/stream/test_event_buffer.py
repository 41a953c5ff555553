"""The event ring buffer: eviction, cursors, `start_at` replay rules, wake-ups."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from nomadpaas.agent.server.stream.event_buffer import EventBuffer, EventDroppedError
from nomadpaas.agent.structs.event import Event, Events


def batch(index: int) -> Events:
    return Events(index, (Event("Job", "JobRegistered", f"j{index}", "default", None, index, {}),))


def filled(size: int, indexes: list[int]) -> EventBuffer:
    buf = EventBuffer(size)
    for i in indexes:
        buf.append(batch(i))
    return buf


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        EventBuffer(0)


def test_holds_only_the_last_size_batches() -> None:
    buf = filled(3, [10, 11, 12, 13, 14])
    assert len(buf) == 3
    assert (buf.oldest_seq, buf.next_seq) == (2, 5)
    assert [buf.get(s).index for s in range(2, 5)] == [12, 13, 14]  # type: ignore[union-attr]
    assert buf.get(5) is None  # not published yet
    with pytest.raises(EventDroppedError, match="event dropped from buffer"):
        buf.get(1)


@pytest.mark.parametrize(
    ("indexes", "size", "want_index", "want_first"),
    [
        # index 0: the whole buffer
        ([5, 6, 7], 10, 0, 5),
        ([5, 6, 7, 8, 9], 3, 0, 7),
        # N itself is included
        ([5, 6, 7], 10, 6, 6),
        # N between two held indexes: the next one
        ([5, 7, 9], 10, 6, 7),
        # N older than the buffer: the oldest held
        ([5, 6, 7, 8, 9], 3, 2, 7),
        # several batches share one index (one raft apply, two writes): the first of them
        ([5, 6, 6, 7], 10, 6, 6),
        # N past the newest: nothing replayed (live only)
        ([5, 6, 7], 10, 8, None),
    ],
)
def test_start_at(indexes: list[int], size: int, want_index: int, want_first: int | None) -> None:
    buf = filled(size, indexes)
    seq = buf.start_at(want_index)
    first = buf.get(seq)
    assert (first.index if first is not None else None) == want_first
    if want_first == 6 and indexes.count(6) == 2:
        assert buf.get(seq + 1).index == 6  # type: ignore[union-attr]


def test_start_at_on_empty_buffer_waits_for_the_first_batch() -> None:
    buf = EventBuffer(4)
    assert buf.start_at(0) == buf.start_at(7) == 0
    buf.append(batch(3))
    assert buf.get(0) == batch(3)


def test_thread_waiter_wakes_on_append() -> None:
    buf = EventBuffer(4)
    woke = threading.Event()

    def waiter() -> None:
        buf.wait(0, buf.generation, timeout=10)
        woke.set()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    assert not woke.is_set()
    buf.append(batch(1))
    assert woke.wait(5)
    t.join(5)


def test_thread_waiter_times_out() -> None:
    buf = EventBuffer(4)
    started = time.monotonic()
    buf.wait(0, buf.generation, timeout=0.1)
    assert 0.09 <= time.monotonic() - started < 5


def test_async_waiters_wake_on_append_from_another_thread() -> None:
    buf = EventBuffer(4)

    async def main() -> list[float]:
        async def one() -> float:
            t0 = time.monotonic()
            await buf.wait_async(0, buf.generation, timeout=10)
            return time.monotonic() - t0

        tasks = [asyncio.create_task(one()) for _ in range(5)]
        await asyncio.sleep(0.05)
        threading.Thread(target=buf.append, args=(batch(1),)).start()
        return await asyncio.gather(*tasks)

    waited = asyncio.run(main())
    assert all(w < 5 for w in waited)


def test_wake_all_releases_waiters_without_an_append() -> None:
    buf = EventBuffer(4)

    async def main() -> None:
        task = asyncio.create_task(buf.wait_async(0, buf.generation, timeout=10))
        await asyncio.sleep(0.05)
        buf.wake_all()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert buf.get(0) is None
