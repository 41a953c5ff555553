"""Controls an alloc runner from other threads: restart, signal, kill, destroy, shut
down; mirrors Restart, Signal, killTasks, Destroy and Shutdown of
client/allocrunner/alloc_runner.go (the counterpart of taskrunner/lifecycle.py).

*kill* (the allocation must stop: tasks die) is kept apart from *shutdown* (the agent
exits: runner threads end, tasks keep running, state stays on disk for the next agent).
"""

from __future__ import annotations

import threading
import time

from nomadpaas.agent.client.allocrunner.alloc_runner_getters import AllocRunnerBase
from nomadpaas.agent.client.allocrunner.alloc_runner_hooks import GroupShutdownDelayHook
from nomadpaas.agent.client.allocrunner.taskrunner.task_config import killing_event
from nomadpaas.agent.structs.alloc import TASK_RESTART_SIGNAL, new_task_event

SHUTDOWN_JOIN_S = 2.0  # how long shutdown waits for a running coordination step
# Restart Signaled reasons, verbatim from client/client.go RestartAllocation.
MSG_USER_RESTART = "User requested task to restart"
MSG_USER_RESTART_ALL = "User requested all tasks to restart"
MSG_USER_RESTART_RUNNING = "User requested running tasks to restart"
ERR_TASK_NOT_RUNNING = "Task not running"


class AllocRunnerError(Exception):
    """A request the allocation cannot serve (unknown task, task not running)."""


class AllocRunnerLifecycle(AllocRunnerBase):
    """An alloc runner's controls, callable from any thread."""

    def restart(self, task_name: str = "", all_tasks: bool = False) -> None:
        """`/v1/client/allocation/:id/restart`: `Restart Signaled`, not counted as a failure."""
        if task_name:
            if task_name not in self.tasks:
                raise AllocRunnerError(f"Could not find task runner for task: {task_name}")
            targets = [self.tasks[task_name]]
            reason = MSG_USER_RESTART
        else:
            targets = [tr for tr in self.tasks.values() if all_tasks or tr.is_running()]
            reason = MSG_USER_RESTART_ALL if all_tasks else MSG_USER_RESTART_RUNNING
        restarted = []
        for tr in targets:
            event = new_task_event(TASK_RESTART_SIGNAL, now_ns=time.time_ns(), RestartReason=reason)
            if tr.restart(event):
                restarted.append(tr.name)
        if task_name and not restarted:
            raise AllocRunnerError(ERR_TASK_NOT_RUNNING)

    def signal(self, task_name: str, sig: str) -> None:
        targets = [self.tasks[task_name]] if task_name in self.tasks else []
        if task_name and not targets:
            raise AllocRunnerError(f"Failed to signal task: {task_name}, err: task not found")
        for tr in targets or [tr for tr in self.tasks.values() if tr.is_running()]:
            tr.signal(sig)

    def kill(self, *, prekill: bool = True) -> None:
        """Kill every task (leader first) and wait for them to be dead; blocking."""
        with self._cond:
            if self._killing:
                return
            self._killing = True
        if prekill:
            for hook in self._prekill_hooks:
                hook.prekill(self.alloc)
        self._kill_tasks()

    def destroy(self) -> None:
        """The server forgot the allocation (GC): kill, remove the alloc dir and state."""
        if self._destroyed:
            return
        self.kill(prekill=False)
        self._kill_tasks(include_poststop=True)  # a poststop task may still wait its turn
        self._shutdown_threads()
        # The alloc thread may still be building the alloc dir (tasks that were dead
        # already do not wait for it): let it finish before removing the tree.
        with self._cond:
            self._cond.wait_for(lambda: self._setup_done, SHUTDOWN_JOIN_S)
        with self._persist_lock:
            self._destroyed = True
        for hook in self._destroy_hooks:
            hook.destroy(self.alloc, self.alloc_dir)
        with self._persist_lock:
            self.cfg.state_db.delete_alloc(self.id)

    def shutdown(self, *, wait: bool = True) -> None:
        """The agent exits: stop our threads, leave the tasks running. With `wait=False`
        only signal them (the client signals every runner first, then waits)."""
        for hook in self._hooks:
            if isinstance(hook, GroupShutdownDelayHook):
                hook.cancel_wait()
        if wait:
            for hook in self._shutdown_hooks:
                hook.shutdown()
        for tr in self.tasks.values():
            tr.shutdown(wait=wait)
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
        if wait:
            self._shutdown_threads()

    def _shutdown_threads(self) -> None:
        """No step starts from now on; wait (bounded) for one in progress elsewhere."""
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
            if self._stepping_thread is threading.current_thread():
                return
            self._cond.wait_for(lambda: not self._stepping, SHUTDOWN_JOIN_S)

    def _kill_tasks(self, *, include_poststop: bool = False) -> None:
        """Leader first, then every other live task concurrently; poststop tasks are
        left to run after the others unless the allocation is being destroyed."""
        max_ns = self.cfg.max_kill_timeout_ns
        live = [
            tr
            for tr in self.tasks.values()
            if not tr.is_dead() and (include_poststop or tr.kind != "poststop")
        ]
        for tr in [t for t in live if t.leader]:
            tr.kill(killing_event(tr.cfg.task, max_ns))
        threads = [
            threading.Thread(target=tr.kill, args=(killing_event(tr.cfg.task, max_ns),),
                             name=f"kill-{tr.name}", daemon=True)
            for tr in live if not tr.leader
        ]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
