"""A few shared threads run the alloc and task runners' short steps; stands in for the
goroutines of client/allocrunner (Nomad starts one per alloc runner and task runner).

A thread per allocation costs a stack, a `Thread.start()` handshake (the caller waits
for the new thread to take the GIL: a few ms each when a thousand allocations arrive at
once) and a blocked thread for the task's whole life. Runners instead submit steps
here: setting the allocation up, one start attempt of a task, what follows its exit.
A step may block briefly (a state commit, a mkdir, the executor announcing its PID) but
never waits on another runner: whatever waits long (a task running, a lifecycle gate,
a restart delay) parks the runner, and the event that ends the wait submits its next
step. Steps that may block for minutes (artifact downloads) go to a thread of their own.

Workers are started on demand up to `max_workers` and leave after `IDLE_EXIT_S` idle,
so an idle agent holds none.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

log = logging.getLogger("nomadpaas.agent.client.allocrunner")

# Enough to overlap the blocking parts of starts (commit fsyncs, the executor's PID
# announcement, mkdirs on a slow disk) with the CPU of others. Under a start storm on a
# busy machine an announcement takes milliseconds (the executor waits for a CPU), so
# 8 workers were often all waiting at once: 16 took a 1,000-allocation start from a
# median of 2.20x Popen to 2.07x (9 interleaved rounds each, bench_agent_allocs).
DEFAULT_MAX_WORKERS = 16
IDLE_EXIT_S = 5.0

Step = Callable[[], None]


class RunnerPool:
    """FIFO steps on at most `max_workers` daemon threads."""

    def __init__(self, max_workers: int = DEFAULT_MAX_WORKERS, name: str = "runner") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be positive")
        self.max_workers = max_workers
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[Step] = deque()
        self._workers = 0
        self._idle = 0
        self._serial = 0

    def submit(self, step: Step) -> None:
        """Run `step` on a worker soon; never blocks on other steps."""
        with self._cond:
            self._queue.append(step)
            if self._idle > len(self._queue) - 1:
                self._cond.notify()
                return
            if self._workers >= self.max_workers:
                return  # a busy worker takes it next
            self._workers += 1
            self._serial += 1
            name = f"{self._name}-{self._serial}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def run_blocking(self, step: Step, name: str) -> None:
        """Run `step` on a thread of its own (it may block for minutes)."""
        threading.Thread(target=_logged(step), name=name, daemon=True).start()

    @property
    def workers(self) -> int:
        with self._cond:
            return self._workers

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._idle += 1
                    woken = self._cond.wait(IDLE_EXIT_S)
                    self._idle -= 1
                    if not woken and not self._queue:
                        self._workers -= 1
                        return
                step = self._queue.popleft()
            _logged(step)()


def _logged(step: Step) -> Step:
    def run() -> None:
        try:
            step()
        except Exception:  # a step's bug must not kill the worker serving everyone
            log.exception("runner step failed")

    return run


# One pool for every runner of the process (as the driver shares one exit watcher).
SHARED_POOL = RunnerPool()
