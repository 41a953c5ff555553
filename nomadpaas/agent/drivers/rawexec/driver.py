"""The raw_exec driver: tasks as host processes in own process groups; drivers/rawexec/driver.go.

Each task runs under a small executor process in its own session and process group: the
native executor (executor.c, built once per machine by executor.py), forked by the one
spawner process of the agent (spawner.py), or, without a C compiler, the POSIX sh wrapper
(handle.py) started with Popen; both speak the same protocol.
``stop_task`` sends ``KillSignal`` (default SIGINT) to the main PID, waits up to ``KillTimeout``,
SIGKILLs the PID, then SIGKILLs the whole process group, as Nomad's executor does. Tasks outlive
the agent: ``recover_task`` re-attaches from a persisted ``TaskHandle`` without restarting them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable

from nomadpaas.agent.drivers.base import (
    TASK_HANDLE_VERSION,
    TASK_STATE_EXITED,
    TASK_STATE_RUNNING,
    DriverError,
    ExitResult,
    RecoverError,
    TaskConfig,
    TaskHandle,
    TaskNotFoundError,
    TaskStatus,
)
from nomadpaas.agent.drivers.rawexec.cpu_weight import autogroup_nice, set_autogroup_nice
from nomadpaas.agent.drivers.rawexec.executor import MARK as EXECUTOR_MARK
from nomadpaas.agent.drivers.rawexec.executor import executor_path
from nomadpaas.agent.drivers.rawexec.handle import (
    EXIT_FILE,
    PID_FILE,
    WRAPPER_NAME,
    WRAPPER_SCRIPT,
    ProcessState,
    TaskProcess,
    pidfd_or_none,
)
from nomadpaas.agent.drivers.rawexec.launch import (
    NotAnnounced,
    abort_start,
    open_stream,
    prepare_state_dir,
    start_time_or_zero,
    wait_announced,
)
from nomadpaas.agent.drivers.rawexec.lookup import lookup_bin as lookup_bin
from nomadpaas.agent.drivers.rawexec.orphans import kill_orphaned_tasks as kill_orphaned_tasks
from nomadpaas.agent.drivers.rawexec.orphans import wrapper_state_dir as wrapper_state_dir
from nomadpaas.agent.drivers.rawexec.spawner import TooLarge, spawner_for
from nomadpaas.agent.drivers.rawexec.state import TaskStore
from nomadpaas.agent.drivers.rawexec.watcher import ExitWatcher

DRIVER_NAME = "raw_exec"
# raw_exec's default when the task's KillSignal is "" (Nomad: executor default is SIGINT).
DEFAULT_KILL_SIGNAL = "SIGINT"
# After the final group SIGKILL, how long to wait for the wrapper to record the exit status.
STOP_EXIT_WAIT_S = 10.0
# The wrapper's files (task.pid, task.exit, task.ack) go straight into the task's private
# dir, which the task dir hook made already: no directory of their own to create (an inode
# per task, 0.5 ms on a slow disk). Handles of older agents keep their StateDir.
_STATE_SUBDIR = "private"


def parse_signal(name: str) -> int:
    """``"SIGINT"``/``"INT"``/``"2"`` → 2; Nomad's error text for anything else."""
    text = name.strip().upper() or DEFAULT_KILL_SIGNAL
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        raise DriverError(f'Unknown signal: "{name}"') from None


def _host_tool(name: str) -> str:
    path = shutil.which(name, path=os.defpath + os.pathsep + os.environ.get("PATH", ""))
    if path is None:
        raise DriverError(f"raw_exec needs {name}(1) on the host")
    return path


class RawExecDriver:
    """raw_exec: start/wait/stop/destroy/signal/inspect/recover host processes."""

    name = DRIVER_NAME

    def __init__(self, *, native_executor: bool = True) -> None:
        """``native_executor``: run tasks under executor.c when it can be built (False: always
        the sh wrapper, which needs setsid(1) and env(1) on the host)."""
        self._tasks = TaskStore()
        self._watcher = _EXIT_WATCHER
        self._executor = executor_path() if native_executor else None
        self._spawner = spawner_for(self._executor) if self._executor is not None else None
        if self._executor is None:
            self._setsid = _host_tool("setsid")
            self._env = _host_tool("env")

    @property
    def executor(self) -> str | None:
        """The native executor's path; None when tasks run under the sh wrapper."""
        return self._executor

    # -- start ------------------------------------------------------------------------------

    def start_task(self, cfg: TaskConfig) -> TaskHandle:
        if self._tasks.get(cfg.id) is not None:
            raise DriverError(f"task with ID {cfg.id!r} already started")
        binary = lookup_bin(cfg.task_dir, cfg.command)
        state_dir = os.path.join(cfg.task_dir, _STATE_SUBDIR)
        prepare_state_dir(state_dir)
        # raw_exec's work_dir: absolute, or relative to the task dir.
        cwd = os.path.join(cfg.task_dir, cfg.work_dir) if cfg.work_dir else cfg.task_dir
        nice = autogroup_nice(cfg.cpu_shares)
        announce_r, announce_w = os.pipe2(os.O_CLOEXEC)
        try:
            wrapper, wrapper_pid, spawner_pid = self._launch(
                state_dir, cwd, binary, cfg, announce_w, nice
            )
        except BaseException:
            os.close(announce_r)
            raise
        finally:
            os.close(announce_w)
        started_at = time.time_ns()
        try:
            pid, pid_start, wrapper_start, announced_wrapper = wait_announced(announce_r)
        except BaseException as exc:
            if isinstance(exc, NotAnnounced) and self._spawner is not None and spawner_pid:
                # Died with the request, or stuck: the next start gets a new spawner.
                self._spawner.replace(spawner_pid)
            abort_start(wrapper, wrapper_pid, state_dir)
            raise
        finally:
            os.close(announce_r)
        if wrapper is None:
            wrapper_pid = announced_wrapper  # a spawner's executor names itself
        elif nice is not None:
            # Started by Popen (sh wrapper, or a request too large for the spawner): no
            # executor set the weight before the exec, so it is set now.
            set_autogroup_nice(pid, nice)
        # The pidfds first: they pin the processes, so start times read next are theirs.
        # A forked executor waits for its release, so it is alive now unless killed. The
        # native executor announces both start times, read by the processes themselves
        # (no /proc reads here); the sh wrapper announces the PID alone.
        pidfd = pidfd_or_none(pid)  # None: reaped already, the exit file tells the rest
        wrapper_fd = None if wrapper is not None else pidfd_or_none(wrapper_pid)
        state = ProcessState(
            state_dir=state_dir,
            wrapper_pid=wrapper_pid,
            wrapper_start_time=wrapper_start or start_time_or_zero(wrapper_pid),
            pid=pid,
            pid_start_time=pid_start or start_time_or_zero(pid),
            pgid=pid,
            started_at_ns=started_at,
        )
        if pidfd is not None and not state.pid_start_time:
            os.close(pidfd)  # already a zombie: nothing left to signal
            pidfd = None
        if wrapper_fd is not None and not state.wrapper_start_time:
            os.close(wrapper_fd)
            wrapper_fd = None
        proc = TaskProcess(cfg.id, cfg.name, state, wrapper, pidfd=pidfd, wrapper_pidfd=wrapper_fd)
        self._tasks.put(cfg.id, proc)
        return TaskHandle(
            task_id=cfg.id, driver=DRIVER_NAME, driver_state=state.to_dict(), task_name=cfg.name
        )

    def _launch(
        self,
        state_dir: str,
        cwd: str,
        binary: str,
        cfg: TaskConfig,
        announce_w: int,
        nice: int | None,
    ) -> tuple[subprocess.Popen[bytes] | None, int, int]:
        """Start the task's executor: forked by the spawner, else (no C compiler, or a request
        too large for one message) with Popen. Returns its Popen and PID and 0; when the
        spawner forks it, (None, 0, the spawner's PID): the executor announces its own PID
        with the task's, and sets the task's autogroup ``nice`` before the exec."""
        out = open_stream(cfg.stdout_path)
        try:
            err = open_stream(cfg.stderr_path)
        except BaseException:
            os.close(out)
            raise
        fds = (announce_w, out, err)
        try:
            if self._spawner is not None:
                try:
                    spawner_pid = self._spawner.spawn(
                        state_dir, cwd, binary, cfg.args, cfg.env, fds, nice
                    )
                    return None, 0, spawner_pid
                except TooLarge:
                    pass
            wrapper = self._popen(state_dir, cwd, binary, cfg, fds)
            return wrapper, wrapper.pid, 0
        except OSError as exc:
            raise DriverError(f"failed to launch command with executor: {exc}") from exc
        finally:
            os.close(out)
            os.close(err)

    def _popen(
        self, state_dir: str, cwd: str, binary: str, cfg: TaskConfig, fds: tuple[int, int, int]
    ) -> subprocess.Popen[bytes]:
        """Start the executor (or sh wrapper) as our child, with ``fds`` as its 0, 1 and 2."""
        if self._executor is not None:
            argv = [self._executor, EXECUTOR_MARK, state_dir, binary, *cfg.args]
        else:
            argv = [
                "/bin/sh", "-c", WRAPPER_SCRIPT, WRAPPER_NAME,
                state_dir, self._setsid, *self._signal_reset(), binary, *cfg.args,
            ]  # fmt: skip
        return subprocess.Popen(
            argv,
            stdin=fds[0],
            stdout=fds[1],
            stderr=fds[2],
            cwd=cwd,
            env=dict(cfg.env),
            start_new_session=True,
        )

    def _signal_reset(self) -> list[str]:
        """An agent started with SIGINT/SIGQUIT ignored (``nomadpaas agent &`` from a script)
        passes that on through exec, and a shell cannot undo it, so the task would shrug off its
        KillSignal. env(1) --default-signal restores the defaults, costing one exec, only then."""
        ignored = [
            name
            for name, sig in (("INT", signal.SIGINT), ("QUIT", signal.SIGQUIT))
            if signal.getsignal(sig) == signal.SIG_IGN
        ]
        return [self._env, "--default-signal=" + ",".join(ignored)] if ignored else []

    # -- wait, inspect, signal, stop ---------------------------------------------------------

    def wait_task(self, task_id: str, timeout_s: float | None = None) -> ExitResult | None:
        """Block until the task exits and return how; None if ``timeout_s`` passes first."""
        return self._get(task_id).wait(timeout_s)

    def watch_task(self, task_id: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when the task may have exited (one shared epoll thread
        instead of a thread per task blocked in ``wait_task``)."""
        self._get(task_id).watch(self._watcher, callback)

    def inspect_task(self, task_id: str) -> TaskStatus:
        proc = self._get(task_id)
        result = proc.poll()
        return TaskStatus(
            id=task_id,
            name=proc.name,
            state=TASK_STATE_RUNNING if result is None else TASK_STATE_EXITED,
            started_at_ns=proc.state.started_at_ns,
            completed_at_ns=0 if result is None else proc.completed_at_ns,
            exit_result=result,
        )

    def signal_task(self, task_id: str, signal: str) -> None:
        self._get(task_id).signal(parse_signal(signal))

    def stop_task(self, task_id: str, timeout_s: float, signal: str = "") -> None:
        """KillSignal → wait ``timeout_s`` → SIGKILL PID → SIGKILL the process group.

        Returns once the exit status is recorded (``wait_task`` then returns at once). The group
        kill is also done by the wrapper whenever the task exits, so it holds for natural exits
        and for tasks that exit while the agent is down.
        """
        proc = self._get(task_id)
        sig = parse_signal(signal or DEFAULT_KILL_SIGNAL)
        if proc.poll() is None:
            proc.signal(sig)
            if proc.wait(timeout_s) is None:
                proc.signal(_SIGKILL)
                # The leader is at most a zombie now, so its PGID is still this task's.
                proc.kill_group()
        if proc.wait(STOP_EXIT_WAIT_S) is None:
            raise DriverError(f"executor failed to record the exit of task {task_id!r}")

    def destroy_task(self, task_id: str, force: bool = False) -> None:
        """Forget the task; release its wrapper. A running task needs ``force`` (then SIGKILL)."""
        proc = self._get(task_id)
        if proc.poll() is None:
            if not force:
                raise DriverError("cannot destroy running task")
            self.stop_task(task_id, 0.0, "SIGKILL")
        proc.release()
        self._tasks.delete(task_id)
        for name in (PID_FILE, EXIT_FILE):
            try:
                os.unlink(os.path.join(proc.state.state_dir, name))
            except FileNotFoundError:
                pass

    # -- recover -----------------------------------------------------------------------------

    def recover_task(self, handle: TaskHandle) -> None:
        """Re-attach to a task started by an earlier agent process; never restarts it."""
        if self._tasks.get(handle.task_id) is not None:
            return
        if handle.driver != DRIVER_NAME:
            raise RecoverError(f"handle is for driver {handle.driver!r}, not {DRIVER_NAME!r}")
        if handle.version != TASK_HANDLE_VERSION:
            raise RecoverError(f"unsupported task handle version {handle.version}")
        try:
            state = ProcessState.from_dict(handle.driver_state)
        except (KeyError, TypeError, ValueError) as exc:
            raise RecoverError(f"failed to decode driver state: {exc}") from exc
        name = handle.task_name or handle.task_id.rsplit("/", 1)[-1]
        proc = TaskProcess(handle.task_id, name, state, wrapper=None)
        result = proc.poll()
        if result is not None and result.err:
            # Without the wrapper nobody can report the exit code: fail the restore, and kill a
            # task still running so the restarted one does not find its port taken.
            if proc.task_alive():
                proc.kill_group()
            raise RecoverError("failed to reattach to executor: executor process is gone")
        self._tasks.put(handle.task_id, proc)

    def task_ids(self) -> list[str]:
        return self._tasks.ids()

    def _get(self, task_id: str) -> TaskProcess:
        proc = self._tasks.get(task_id)
        if proc is None:
            raise TaskNotFoundError(task_id)
        return proc


_SIGKILL = int(signal.SIGKILL)
# One exit watcher (one thread, started on first use) for every driver in the process.
_EXIT_WATCHER = ExitWatcher()
