"""Runs a task's hooks phase by phase (prestart, poststart, prekill, exited, stop); mirrors
the phase functions of client/allocrunner/taskrunner/task_runner_hooks.go.

The hooks themselves, in order, come from task_runner_hooks.py; a runner picks each
phase's hooks once (task_runner_getters.py). A prestart hook that reports `done` is not
run again, not even after a restart or by the next agent re-attaching to the task.
"""

from __future__ import annotations

import logging
import time

from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import (
    HookError,
    TaskPrestartRequest,
    TaskStopRequest,
)
from nomadpaas.agent.client.allocrunner.taskrunner.task_config import task_env
from nomadpaas.agent.client.allocrunner.taskrunner.task_runner_steps import SteppedRunner
from nomadpaas.agent.structs.alloc import TASK_KILLED, TASK_STATE_DEAD, new_task_event

log = logging.getLogger("nomadpaas.agent.client.taskrunner")


class HookPhases(SteppedRunner):
    """A task runner that runs its hooks' phases."""

    def _run_prestart(self, *, restoring: bool = False) -> dict[str, str]:
        """Run the prestart hooks not done yet; returns the task environment."""
        env = self._task_env()
        # One request for every hook of the phase: they only read it.
        req = TaskPrestartRequest(
            alloc=self.cfg.alloc, task=self.cfg.task, alloc_dir=self.cfg.alloc_dir,
            task_dir=self.task_dir, env=env, emit=self.emit, restoring=restoring,
            record=self.record,
        )  # fmt: skip
        for hook in self._prestart_hooks:
            if hook.name in self._hooks_done:
                continue
            try:
                resp = hook.prestart(req)
            except HookError:
                raise
            except Exception as exc:
                raise HookError(f"{hook.name}: {exc}", None, recoverable=True) from exc
            if resp.done:
                with self._lock:
                    self._hooks_done.add(hook.name)
        return env

    def _run_poststart(self) -> None:
        for hook in self._poststart_hooks:
            hook.poststart(self.cfg.alloc, self.cfg.task)

    def _run_prekill(self) -> None:
        for hook in self._prekill_hooks:
            hook.prekill(self.cfg.alloc, self.cfg.task)

    def _run_exited(self) -> None:
        for hook in self._exited_hooks:
            hook.exited(self.cfg.alloc, self.cfg.task)

    def _finish(self) -> None:
        """The task is dead for good: `Killed` (after a kill), stop hooks, state dead."""
        if self._shutdown and not self._kill_requested:
            return
        req = TaskStopRequest(alloc=self.cfg.alloc, task=self.cfg.task, task_dir=self.task_dir)
        for hook in self._stop_hooks:
            try:
                hook.stop(req)
            except Exception:
                log.exception("task %s: stop hook %s failed", self.task_id, hook.name)
        event = new_task_event(TASK_KILLED, now_ns=time.time_ns()) if self._kill_requested else None
        # `dead` is final: is_dead() holds before the alloc runner hears of it, so its
        # (event-driven) coordinator sees the allocation done on this very update.
        self._update(TASK_STATE_DEAD, event, done=True)

    def _finish_unstarted(self) -> None:
        """Killed before the loop thread ever ran (e.g. the alloc stopped while pending)."""
        if not self._done.is_set():
            self._finish()

    def _task_env(self) -> dict[str, str]:
        return task_env(
            self.cfg.alloc, self.cfg.task, self.cfg.node, self.cfg.alloc_dir, self.cfg.host_env
        )
