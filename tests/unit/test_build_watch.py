"""BuildWatcher against a scripted stand-in for `Allocations` (no HTTP): it waits for the
task with blocking queries that carry each answer's index, then follows the log live; a
marker whose result is in ends the wait at once, a heartbeat makes it look at the
allocation (a task that died without its marker), and the rest of the log is then read
without `follow`. It never spins on a server that ignores `?index=` or drops streams."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

import pytest

from nomadpaas.buildwatch import LOG_POLL_MAX_S, POLL_INTERVAL_S, BuildWatcher
from nomadpaas.errors import TimedOut
from nomadpaas.models import Build
from nomadpaas.nomad.allocations import Allocation, TaskState
from nomadpaas.nomad.frames import StreamFrame

HEARTBEAT = StreamFrame()


def alloc(status: str, index: int) -> Allocation:
    state = "dead" if status in ("complete", "failed") else status
    return Allocation(
        id="a1",
        client_status=status,
        task_states={"build": TaskState(state=state)},
        modify_index=index,
    )


def data(text: bytes) -> StreamFrame:
    return StreamFrame(data=text)


@dataclass
class FakeClock:
    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class ScriptedAllocations:
    """Answers in order; blocking calls and heartbeats advance the fake clock."""

    clock: FakeClock
    evaluation: list[tuple[list[Allocation], int, float]] = field(default_factory=list)
    watches: list[tuple[Allocation, int, float]] = field(default_factory=list)
    gets: list[Allocation] = field(default_factory=list)
    #: One list of frames per followed stream opened, in order.
    follows: list[list[StreamFrame]] = field(default_factory=list)
    #: What a read without `follow` returns.
    rest: bytes = b""
    calls: list[tuple[str, int, float]] = field(default_factory=list)
    reads: list[tuple[int, bool]] = field(default_factory=list)
    heartbeat_s: float = 1.0

    def watch_evaluation(
        self, eval_id: str, *, index: int, wait: float
    ) -> tuple[list[Allocation], int]:
        self.calls.append(("eval", index, wait))
        found, new_index, took = self.evaluation.pop(0)
        self.clock.now += took
        return found, new_index

    def of_job(self, job_id: str) -> list[Allocation]:
        raise AssertionError("the evaluation is known: no job listing")

    def watch(self, alloc_id: str, *, index: int, wait: float) -> tuple[Allocation, int]:
        self.calls.append(("alloc", index, wait))
        found, new_index, took = self.watches.pop(0)
        self.clock.now += took
        return found, new_index

    def get(self, alloc_id: str) -> Allocation:
        self.calls.append(("get", 0, 0.0))
        return self.gets.pop(0)

    def stream_logs(
        self, alloc_id: str, task: str, log_type: str = "stdout", *, follow: bool = False,
        offset: int = 0, origin: str = "start", idle_timeout: float = 0.0,
    ) -> Generator[StreamFrame, None, None]:  # fmt: skip
        self.reads.append((offset, follow))
        if not follow:
            if self.rest:
                yield data(self.rest)
            return
        for frame in self.follows.pop(0) if self.follows else []:
            if frame.is_heartbeat:
                self.clock.now += self.heartbeat_s
            yield frame


def watcher(fake: ScriptedAllocations, lines: list[str], deadline: float = 60.0) -> BuildWatcher:
    build = Build(app="web", build_id="b1", status="pending", source_sha256="", source_key="")
    return BuildWatcher(
        fake,  # type: ignore[arg-type]
        build,
        deadline,
        lines.append,
        fake.clock.clock,
        fake.clock.sleep,
    )


def always(marker: str) -> bool:
    """A `finished` that takes any marker as the result."""
    return True


def test_placement_is_a_blocking_query_that_carries_the_index() -> None:
    clock = FakeClock()
    fake = ScriptedAllocations(clock, evaluation=[([], 5, 0.05), ([alloc("pending", 6)], 6, 0.01)])
    found = watcher(fake, []).allocation("eval-1")
    assert found.id == "a1"
    assert [c[:2] for c in fake.calls] == [("eval", 0), ("eval", 5)]
    assert clock.sleeps == []  # the server blocked for us: no sleeping on our side


def test_the_log_is_followed_live_and_a_marker_with_its_result_ends_the_wait() -> None:
    clock = FakeClock()
    fake = ScriptedAllocations(
        clock,
        watches=[(alloc("pending", 6), 6, 0.0), (alloc("running", 7), 7, 0.03)],
        follows=[[data(b"-----> Building\n  half a li"), data(b"ne\n-----> Stored\n-more")]],
    )
    asked: list[int] = []

    def finished(marker: str) -> bool:
        assert marker == "-----> Stored"
        asked.append(len(fake.reads))
        return True

    lines: list[str] = []
    done, _ = watcher(fake, lines).follow("a1", frozenset({"-----> Stored"}), finished)
    assert not done.terminal  # the result was in before the allocation ended
    assert lines == ["-----> Building", "  half a line", "-----> Stored"]
    assert asked == [1]  # asked once, right after the marker, on the one followed stream
    assert fake.reads == [(0, True)]
    # Waiting for the task to start: blocking queries that pass each index on.
    assert fake.calls == [("alloc", 0, pytest.approx(5.0)), ("alloc", 6, pytest.approx(5.0))]
    assert clock.sleeps == []  # nothing polled


def test_a_task_that_dies_without_its_marker_is_seen_at_a_heartbeat() -> None:
    clock = FakeClock()
    fake = ScriptedAllocations(
        clock,
        watches=[(alloc("running", 7), 7, 0.0)],
        gets=[alloc("running", 7), alloc("failed", 9)],
        follows=[[data(b"-----> Building\n"), HEARTBEAT, HEARTBEAT, HEARTBEAT]],
        rest=b"  last words\n  unterminated",
    )
    lines: list[str] = []
    done, splitter = watcher(fake, lines).follow("a1", frozenset({"-----> Stored"}), always)
    assert done.terminal and done.client_status == "failed"
    assert [c[0] for c in fake.calls] == ["alloc", "get", "get"]  # one look per heartbeat
    # The rest is read once, without follow, from the bytes already received.
    assert fake.reads == [(0, True), (16, False)]
    assert lines == ["-----> Building", "  last words", "  unterminated"]
    assert splitter.tail[-1] == "  unterminated"


def test_a_dropped_stream_is_followed_again_from_its_offset_after_a_blocking_wait() -> None:
    clock = FakeClock()
    fake = ScriptedAllocations(
        clock,
        watches=[
            (alloc("running", 7), 7, 0.0),
            (alloc("running", 8), 8, 0.01),  # after the first stream: output came, short
            (alloc("running", 8), 8, 0.0),  # a server ignoring ?index=: paced
            (alloc("complete", 9), 9, 0.0),
        ],
        follows=[[data(b"one\n")], [], []],
        rest=b"two\n",
    )
    lines: list[str] = []
    done, _ = watcher(fake, lines).follow("a1")
    assert done.terminal and lines == ["one", "two"]
    assert fake.reads == [(0, True), (4, True), (4, True), (4, False)]
    assert [c[1:] for c in fake.calls[1:]] == [
        (7, pytest.approx(0.05)),
        (8, pytest.approx(LOG_POLL_MAX_S)),
        (8, pytest.approx(LOG_POLL_MAX_S)),
    ]
    assert clock.sleeps == [pytest.approx(LOG_POLL_MAX_S)]  # the same index: not spun


def test_a_task_that_never_started_is_read_once_at_its_end() -> None:
    clock = FakeClock()
    fake = ScriptedAllocations(
        clock,
        watches=[(alloc("pending", 5), 5, 0.0), (alloc("failed", 6), 6, 0.2)],
        rest=b"",
    )
    done, splitter = watcher(fake, []).follow("a1")
    assert done.terminal and fake.reads == [(0, False)] and splitter.tail == []


def test_a_server_ignoring_the_index_is_paced_not_spun() -> None:
    clock = FakeClock()
    fake = ScriptedAllocations(
        clock,
        evaluation=[([], 3, 0.0), ([], 3, 0.0), ([], 3, 0.0), ([alloc("pending", 4)], 4, 0.0)],
    )
    watcher(fake, []).allocation("eval-1")
    # The first answer (index 0) is immediate by design; later same-index answers are not.
    assert clock.sleeps == [pytest.approx(POLL_INTERVAL_S)] * 2


def test_deadline_while_following_raises_timed_out() -> None:
    clock = FakeClock()
    fake = ScriptedAllocations(
        clock,
        watches=[(alloc("running", 7), 7, 0.0)],
        gets=[alloc("running", 7)] * 20,
        follows=[[HEARTBEAT] * 20],
    )
    with pytest.raises(TimedOut) as info:
        watcher(fake, [], deadline=3.0).follow("a1")
    assert "a1" in info.value.message and len(fake.calls) < 20


def test_a_marker_whose_result_is_not_in_yet_does_not_end_the_wait() -> None:
    clock = FakeClock()
    fake = ScriptedAllocations(
        clock,
        watches=[(alloc("running", 7), 7, 0.0)],
        gets=[alloc("complete", 8)],
        follows=[[data(b"-----> Stored\n"), HEARTBEAT]],
    )
    asked: list[bool] = []

    def finished(marker: str) -> bool:
        asked.append(False)
        return False

    done, _ = watcher(fake, []).follow("a1", frozenset({"-----> Stored"}), finished)
    assert done.terminal and asked == [False]


def test_the_placed_stub_starts_the_wait_at_its_index_without_a_first_read() -> None:
    clock = FakeClock()
    fake = ScriptedAllocations(
        clock,
        watches=[(alloc("running", 9), 9, 0.02)],
        follows=[[data(b"-----> Stored\n")]],
    )
    lines: list[str] = []
    placed = alloc("pending", 6)  # as the evaluation's allocation list showed it
    watcher(fake, lines).follow("a1", frozenset({"-----> Stored"}), always, placed=placed)
    # No read at index 0: the one blocking query waits past the stub's ModifyIndex.
    assert fake.calls == [("alloc", 6, pytest.approx(5.0))]
    assert lines == ["-----> Stored"] and fake.reads == [(0, True)]


def test_a_placed_stub_whose_task_runs_goes_straight_to_the_log() -> None:
    clock = FakeClock()
    fake = ScriptedAllocations(clock, follows=[[data(b"-----> Stored\n")]])
    placed = alloc("running", 7)
    done, _ = watcher(fake, []).follow("a1", frozenset({"-----> Stored"}), always, placed=placed)
    assert fake.calls == [] and fake.reads == [(0, True)] and done == placed


def test_a_stub_of_another_allocation_is_not_taken_for_this_one() -> None:
    clock = FakeClock()
    fake = ScriptedAllocations(
        clock,
        watches=[(alloc("running", 7), 7, 0.0)],
        follows=[[data(b"-----> Stored\n")]],
    )
    other = Allocation(id="a2", client_status="running", modify_index=30)
    watcher(fake, []).follow("a1", frozenset({"-----> Stored"}), always, placed=other)
    assert fake.calls == [("alloc", 0, pytest.approx(5.0))]
