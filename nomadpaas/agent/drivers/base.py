"""The task driver contract: Driver protocol and its value types; mirrors plugins/drivers/driver.go.

A driver starts, waits on, signals, stops and destroys tasks, and re-attaches to tasks that
outlived the agent (``recover_task``). The types here are plain values: ``TaskConfig`` is what the
task runner hands in, ``TaskHandle`` is what it persists (JSON-serialisable, PascalCase on the
wire like Nomad's ``drivers.TaskHandle``), ``ExitResult`` is what ``wait_task`` returns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

TASK_STATE_RUNNING = "running"
TASK_STATE_EXITED = "exited"
TASK_STATE_UNKNOWN = "unknown"

# Bumped when the serialised form of TaskHandle.DriverState changes incompatibly.
TASK_HANDLE_VERSION = 1


class DriverError(Exception):
    """A driver operation failed; the message is Nomad's wording where Nomad has one."""


class TaskNotFoundError(DriverError):
    """The driver holds no task with this ID (Nomad: ``drivers.ErrTaskNotFound``)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task not found for given id: {task_id}")
        self.task_id = task_id


class RecoverError(DriverError):
    """``recover_task`` could not re-attach; the task runner marks it `Failed Restoring Task`."""


@dataclass(frozen=True)
class TaskConfig:
    """Everything a driver needs to start one task (Nomad: ``drivers.TaskConfig``).

    ``env`` is the *complete* environment (host env minus the denylist, plus the task env; see
    client/taskenv.py). ``stdout_path``/``stderr_path`` are the FIFOs logmon reads.
    """

    id: str  # unique per running task, chosen by the task runner, e.g. "<alloc_id>/<task>"
    alloc_id: str
    name: str
    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    alloc_dir: str = ""  # <data_dir>/alloc/<alloc_id>
    task_dir: str = ""  # <alloc_dir>/<task>
    work_dir: str = ""  # raw_exec config `work_dir`; "" means task_dir
    stdout_path: str = ""  # "" means /dev/null
    stderr_path: str = ""
    # Nomad: Resources.LinuxResources.CPUShares, the MHz the task reserved; its CPU weight
    # (rawexec/cpu_weight.py). 0: the default weight.
    cpu_shares: int = 0


@dataclass(frozen=True)
class ExitResult:
    """How a task ended (Nomad: ``drivers.ExitResult``).

    Like Nomad's executor, a signal death reports ``exit_code`` = 128 + signal and ``signal``.
    ``err`` is set when the driver lost track of the task and the code is unknown (-1).
    """

    exit_code: int
    signal: int = 0
    oom_killed: bool = False
    err: str = ""

    def successful(self) -> bool:
        return self.exit_code == 0 and self.signal == 0 and not self.err


@dataclass(frozen=True)
class TaskStatus:
    """A snapshot of one task (Nomad: ``drivers.TaskStatus``); times are Unix nanoseconds."""

    id: str
    name: str
    state: str  # TASK_STATE_RUNNING | TASK_STATE_EXITED | TASK_STATE_UNKNOWN
    started_at_ns: int
    completed_at_ns: int = 0
    exit_result: ExitResult | None = None


@dataclass(frozen=True)
class TaskHandle:
    """What the task runner persists to re-attach later (Nomad: ``drivers.TaskHandle``).

    ``driver_state`` is opaque to everyone but the driver that produced it.
    """

    task_id: str
    driver: str
    driver_state: Mapping[str, Any]
    task_name: str = ""
    version: int = TASK_HANDLE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "Version": self.version,
            "Driver": self.driver,
            "TaskID": self.task_id,
            "TaskName": self.task_name,
            "DriverState": dict(self.driver_state),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskHandle:
        return cls(
            task_id=str(data["TaskID"]),
            driver=str(data["Driver"]),
            driver_state=dict(data["DriverState"]),
            task_name=str(data.get("TaskName", "")),
            version=int(data.get("Version", TASK_HANDLE_VERSION)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TaskHandle:
        return cls.from_dict(json.loads(text))


class Driver(Protocol):
    """The operations a task runner needs from a driver (Nomad: ``drivers.DriverPlugin``)."""

    name: str

    def start_task(self, cfg: TaskConfig) -> TaskHandle: ...

    def wait_task(self, task_id: str, timeout_s: float | None = None) -> ExitResult | None: ...

    def watch_task(self, task_id: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, from any thread, when the task may have exited (it may
        fire early: check with ``wait_task``); lets one thread serve every task's wait."""
        ...

    def stop_task(self, task_id: str, timeout_s: float, signal: str = "") -> None: ...

    def destroy_task(self, task_id: str, force: bool = False) -> None: ...

    def signal_task(self, task_id: str, signal: str) -> None: ...

    def inspect_task(self, task_id: str) -> TaskStatus: ...

    def recover_task(self, handle: TaskHandle) -> None: ...
