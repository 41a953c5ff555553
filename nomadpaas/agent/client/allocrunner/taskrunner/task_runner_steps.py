"""Runs a task runner's loop in steps on the shared runner workers, parking it between
them; stands in for the goroutine of client/allocrunner/taskrunner/task_runner.go (Run).

The loop is a generator. It *parks* (yields a `Park`) wherever it would wait long: for
its lifecycle gate, while the task runs, during a restart delay. Parked, it holds no
thread; the event that ends the wait (the coordinator opening the gate, the driver's exit
watch, a timer, a kill or shutdown) calls `_wake_up`, which submits its next step.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Generator

from nomadpaas.agent.client.allocrunner.taskrunner.task_runner_getters import (
    TaskRunnerBase,
    TaskRunnerConfig,
)
from nomadpaas.agent.structs.alloc import TASK_HOOK_FAILED, new_task_event

log = logging.getLogger("nomadpaas.agent.client.taskrunner")

DELAY_SLACK_S = 0.001  # a restart delay's timer fires this much late rather than early


class Park(enum.Enum):
    """What a parked loop waits for."""

    GATE = "gate"  # the coordinator to open the lifecycle gate
    EXIT = "exit"  # the driver's exit watch
    DELAY = "delay"  # a restart delay to pass


Life = Generator[Park, None, None]


class SteppedRunner(TaskRunnerBase):
    """A task runner whose loop runs in steps and parks instead of holding a thread."""

    def __init__(self, cfg: TaskRunnerConfig) -> None:
        super().__init__(cfg)
        self._life: Life | None = None  # the loop, once started
        self._life_over = False  # the loop returned (or crashed)
        self._parked: Park | None = None  # what the parked loop waits for
        self._stepping: threading.Thread | None = None  # the thread running a step
        self._delay_deadline = 0.0  # monotonic end of a restart delay
        self._pool = cfg.pool

    def _finish(self) -> None:
        """The task is dead for good (the hook phases implement it)."""
        raise NotImplementedError

    def _submit(self) -> None:
        """Queue the loop's next step; a start that downloads artifacts may take minutes,
        so it gets a thread of its own instead of a shared worker."""
        if self.cfg.task.get("Artifacts") and "artifacts" not in self._hooks_done:
            self._pool.run_blocking(self._step, f"task-{self.name}-{self.alloc_id[:8]}")
        else:
            self._pool.submit(self._step)

    def _step(self) -> None:
        """Run the loop until it parks or ends."""
        life = self._life
        assert life is not None
        with self._lock:
            self._stepping = threading.current_thread()
        park: Park | None = None
        try:
            park = next(life)
        except StopIteration:
            pass
        except Exception as exc:  # a bug must not leave the task "running" forever
            self._crashed(exc)
        resume = False
        with self._wake:
            self._stepping = None
            if park is None:
                self._life_over = True
            else:
                self._parked = park
                resume = self._wait_over(park)  # the event came while we were busy
                if resume:
                    self._parked = None
            self._wake.notify_all()
        if resume:
            self._submit()
        elif park is Park.DELAY:
            self._arm_delay_timer()

    def _arm_delay_timer(self) -> None:
        """Wake the parked loop when its restart delay ends (a kill or shutdown may wake
        it sooner); a timer that fires a hair early arms another."""

        def fired() -> None:
            with self._wake:
                early = self._parked is Park.DELAY and not self._wait_over(Park.DELAY)
            if early:
                self._arm_delay_timer()
            else:
                self._wake_up()

        left = max(0.0, self._delay_deadline - time.monotonic())
        timer = threading.Timer(left + DELAY_SLACK_S, fired)
        timer.daemon = True
        timer.start()

    def _wait_over(self, park: Park) -> bool:
        """Whether what `park` waits for happened (lock held)."""
        if park is Park.GATE:
            return self._gate_open or self._kill_requested or self._shutdown
        if park is Park.EXIT:
            return self._exit_seen or self._shutdown
        return self._kill_requested or self._shutdown or time.monotonic() >= self._delay_deadline

    def _wake_up(self) -> None:
        """Resume a parked loop whose wait is over (from any thread; spurious calls are
        harmless: the loop re-checks and parks again)."""
        with self._wake:
            park = self._parked
            if park is None or not self._wait_over(park):
                return
            self._parked = None
        self._submit()

    def _crashed(self, exc: Exception) -> None:
        log.exception("task runner %s crashed", self.task_id, exc_info=exc)
        if not self._shutdown:
            message = f"task runner: {exc}"
            event = new_task_event(
                TASK_HOOK_FAILED, now_ns=time.time_ns(), Message=message, FailsTask=True
            )
            self.emit(event)
            self._finish()
