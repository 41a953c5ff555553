"""The runner workers: steps run in order on at most `max_workers` threads that leave
when idle; a failing step does not take a worker down."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from nomadpaas.agent.client.allocrunner import workers as workers_module
from nomadpaas.agent.client.allocrunner.workers import RunnerPool

DEADLINE_S = 30.0


def wait_until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_steps_beyond_max_workers_queue_and_all_run() -> None:
    pool = RunnerPool(max_workers=2, name="t-queue")
    release = threading.Event()
    ran: list[int] = []
    lock = threading.Lock()

    def step(i: int) -> Callable[[], None]:
        def run() -> None:
            release.wait(DEADLINE_S)
            with lock:
                ran.append(i)

        return run

    for i in range(20):
        pool.submit(step(i))
    wait_until(lambda: pool.workers == 2, "two workers")
    assert len([t for t in threading.enumerate() if t.name.startswith("t-queue-")]) == 2
    release.set()
    wait_until(lambda: len(ran) == 20, "every step")
    assert sorted(ran) == list(range(20))
    assert pool.workers <= 2


def test_a_single_worker_runs_steps_in_submit_order() -> None:
    pool = RunnerPool(max_workers=1, name="t-order")
    ran: list[int] = []
    done = threading.Event()
    for i in range(50):
        pool.submit(lambda i=i: ran.append(i))
    pool.submit(done.set)
    assert done.wait(DEADLINE_S)
    assert ran == list(range(50))


def test_a_failing_step_leaves_the_worker_serving(caplog: pytest.LogCaptureFixture) -> None:
    pool = RunnerPool(max_workers=1, name="t-fail")
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    pool.submit(boom)
    pool.submit(done.set)
    assert done.wait(DEADLINE_S)
    assert "runner step failed" in caplog.text


def test_idle_workers_leave(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers_module, "IDLE_EXIT_S", 0.05)
    pool = RunnerPool(max_workers=3, name="t-idle")
    done = threading.Barrier(4, timeout=DEADLINE_S)
    for _ in range(3):
        pool.submit(done.wait)
    done.wait()
    wait_until(lambda: pool.workers == 0, "idle workers to leave")
    ran = threading.Event()
    pool.submit(ran.set)  # a new step starts a worker again
    assert ran.wait(DEADLINE_S)


def test_blocking_steps_get_a_thread_of_their_own() -> None:
    pool = RunnerPool(max_workers=1, name="t-block")
    release = threading.Event()
    pool.run_blocking(lambda: release.wait(DEADLINE_S), "t-block-download")
    ran = threading.Event()
    pool.submit(ran.set)  # not stuck behind the blocking step
    assert ran.wait(DEADLINE_S)
    release.set()
