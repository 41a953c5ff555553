"""BuildWatcher against a scripted stand-in for `Allocations` (no HTTP): it waits with
blocking queries, passes each answer's index to the next, notices the end from the
allocation itself (not from log frames), and never spins on a server that ignores
`?index=`."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

import pytest

from nomadpaas.buildwatch import (
    LOG_POLL_MAX_S,
    LOG_POLL_MIN_S,
    NEAR_END_POLL_S,
    POLL_INTERVAL_S,
    BuildWatcher,
)
from nomadpaas.errors import TimedOut
from nomadpaas.models import Build
from nomadpaas.nomad.allocations import Allocation, TaskState
from nomadpaas.nomad.frames import StreamFrame


def alloc(status: str, index: int) -> Allocation:
    state = "dead" if status in ("complete", "failed") else status
    return Allocation(
        id="a1",
        client_status=status,
        task_states={"build": TaskState(state=state)},
        modify_index=index,
    )


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
    """Answers in order; each blocking call advances the fake clock by what it "waited"."""

    clock: FakeClock
    evaluation: list[tuple[list[Allocation], int, float]] = field(default_factory=list)
    watches: list[tuple[Allocation, int, float]] = field(default_factory=list)
    logs: list[bytes] = field(default_factory=list)
    calls: list[tuple[str, int, float]] = field(default_factory=list)
    reads: list[tuple[int, bool]] = field(default_factory=list)

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

    def stream_logs(
        self, alloc_id: str, task: str, log_type: str = "stdout", *, follow: bool = False,
        offset: int = 0, origin: str = "start", idle_timeout: float = 0.0,
    ) -> Generator[StreamFrame, None, None]:  # fmt: skip
        self.reads.append((offset, follow))
        data = self.logs.pop(0) if self.logs else b""
        if data:
            yield StreamFrame(data=data, offset=offset + len(data))
        yield StreamFrame()  # a heartbeat


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


def test_placement_is_a_blocking_query_that_carries_the_index() -> None:
    clock = FakeClock()
    fake = ScriptedAllocations(clock, evaluation=[([], 5, 0.05), ([alloc("pending", 6)], 6, 0.01)])
    found = watcher(fake, []).allocation("eval-1")
    assert found.id == "a1"
    assert [c[:2] for c in fake.calls] == [("eval", 0), ("eval", 5)]
    assert clock.sleeps == []  # the server blocked for us: no sleeping on our side


def test_the_end_is_seen_from_the_allocation_and_the_rest_of_the_log_is_read() -> None:
    clock = FakeClock()
    fake = ScriptedAllocations(
        clock,
        watches=[
            (alloc("running", 7), 7, 0.0),
            (alloc("running", 7), 7, LOG_POLL_MIN_S),  # quiet: the wait ran out
            (alloc("complete", 9), 9, 0.02),  # the task exited: answered at once
        ],
        logs=[b"-----> Building\n       half a li", b"", b"ne\n-----> Done\n"],
    )
    lines: list[str] = []
    done, splitter = watcher(fake, lines).follow("a1")
    assert done.terminal and done.client_status == "complete"
    assert lines == ["-----> Building", "       half a line", "-----> Done"]
    assert [c[1] for c in fake.calls] == [0, 7, 7]  # each answer's index is passed on
    assert all(not follow for _offset, follow in fake.reads)  # never a followed stream
    assert [offset for offset, _ in fake.reads] == [0, 32, 32]
    # After a quiet read the next wait doubles; output resets it to the shortest.
    assert fake.calls[1][2] == pytest.approx(LOG_POLL_MIN_S)
    assert fake.calls[2][2] == pytest.approx(min(2 * LOG_POLL_MIN_S, LOG_POLL_MAX_S))
    assert splitter.tail[-1] == "-----> Done"


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
        clock, watches=[(alloc("running", 7 + n), 7 + n, LOG_POLL_MAX_S) for n in range(20)]
    )
    with pytest.raises(TimedOut) as info:
        watcher(fake, [], deadline=3.0).follow("a1")
    assert "a1" in info.value.message and len(fake.calls) < 20


def test_after_a_near_end_line_the_log_is_read_often_and_a_marker_ends_the_wait() -> None:
    clock = FakeClock()
    fake = ScriptedAllocations(
        clock,
        watches=[(alloc("running", 7), 7, 0.0)] + [(alloc("running", 7), 7, 0.01)] * 5,
        logs=[b"-----> Compiling\n-----> Uploading\n", b"", b"", b"-----> Stored\n"],
    )
    asked: list[int] = []

    def finished() -> bool:
        asked.append(len(fake.reads))
        return True

    done, _ = watcher(fake, []).follow(
        "a1", frozenset({"-----> Stored"}), finished, near_end=frozenset({"-----> Uploading"})
    )
    assert not done.terminal  # the result was in before the allocation ended
    assert asked == [4]  # asked once, right after the marker line
    # Once the end was near, every wait is the short one, not a doubling backoff.
    assert [c[2] for c in fake.calls[1:4]] == [pytest.approx(NEAR_END_POLL_S)] * 3


def test_a_marker_whose_result_is_not_in_yet_does_not_end_the_wait() -> None:
    clock = FakeClock()
    fake = ScriptedAllocations(
        clock,
        watches=[(alloc("running", 7), 7, 0.0), (alloc("complete", 8), 8, 0.0)],
        logs=[b"-----> Stored\n", b""],
    )
    done, _ = watcher(fake, []).follow("a1", frozenset({"-----> Stored"}), lambda: False)
    assert done.terminal
