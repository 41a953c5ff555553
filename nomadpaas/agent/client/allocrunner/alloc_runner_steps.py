"""Coordinates an alloc runner's tasks in event-driven steps; stands in for the
handleTaskStateUpdates goroutine of client/allocrunner/alloc_runner.go.

The coordinator is not a thread: every task state change, server update or finished
kill runs one coordination step (on the thread that caused it; a step arriving while
another runs is folded into it). A step opens the lifecycle gates
(task_hook_coordinator.py), decides to kill the live tasks when a task failed, the leader
died or only sidecars are left, and starts the kill sequence when the server sets
DesiredStatus stop/evict; kills block, so they run on a thread of their own. While a kill
of ours runs no gate opens (as when Nomad's coordinator waits for the kill).
"""

from __future__ import annotations

import logging
import threading
import time

from nomadpaas.agent.client.allocrunner.alloc_runner_lifecycle import AllocRunnerLifecycle
from nomadpaas.agent.client.allocrunner.task_hook_coordinator import (
    TaskView,
    kill_event_type,
    startable,
)
from nomadpaas.agent.structs.alloc import TASK_SIBLING_FAILED, new_task_event

log = logging.getLogger("nomadpaas.agent.client.allocrunner")


class SteppedAllocRunner(AllocRunnerLifecycle):
    """An alloc runner whose coordinator runs in steps."""

    def _views(self) -> list[TaskView]:
        return [
            TaskView(tr.name, tr.kind, tr.sidecar, tr.leader, tr.task_state())
            for tr in self.tasks.values()
        ]

    def _kick(self) -> None:
        """Run coordination steps until none is pending; a thread already stepping picks
        up this request instead (so a step that emits events does not recurse)."""
        with self._cond:
            self._dirty = True
            if self._stepping or not self._set_up:
                return
            self._stepping = True
            self._stepping_thread = threading.current_thread()
        try:
            while True:
                with self._cond:
                    if not self._dirty or self._shutdown or self._finished:
                        return
                    self._dirty = False
                self._step()
        except Exception:
            log.exception("alloc runner %s: coordinator crashed", self.id)
        finally:
            with self._cond:
                self._stepping = False
                self._stepping_thread = None
                self._cond.notify_all()

    def _step(self) -> None:
        with self._cond:
            stop = self._stop_requested and not self._killing
            busy = self._own_kill
        if stop:
            self._kill_async(prekill=True)
            return
        if busy:
            return  # the kill's end asks for the next step
        if self._coordinate():
            return
        if self.is_done():
            self._push_update()
            for hook in self._postrun_hooks:
                hook.postrun(self.alloc)
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _kill_async(self, *, prekill: bool) -> None:
        """`kill` on a thread of its own (it blocks for up to KillTimeout), then a step."""
        with self._cond:
            if self._own_kill:
                return
            self._own_kill = True

        def killer() -> None:
            try:
                self.kill(prekill=prekill)
            except Exception:
                log.exception("alloc runner %s: kill failed", self.id)
            finally:
                with self._cond:
                    self._own_kill = False
                self._kick()

        threading.Thread(target=killer, name=f"kill-{self.id[:8]}", daemon=True).start()

    def _coordinate(self) -> bool:
        """Open the gates that are due; True when a kill was started instead."""
        views = self._views()
        if not self._killing:
            decision = kill_event_type(views)
            if decision is not None:
                event_type, sibling = decision
                fields = {"FailedSibling": sibling} if event_type == TASK_SIBLING_FAILED else {}
                for tr in self.tasks.values():
                    if not tr.is_dead() and tr.kind != "poststop":
                        tr.emit(new_task_event(event_type, now_ns=time.time_ns(), **fields))
                self._kill_async(prekill=False)
                return True
        for name in startable(views):
            self.tasks[name].open_gate()
        return False
