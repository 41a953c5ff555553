"""The task runner's hook phases as small protocols; mirrors
client/allocrunner/interfaces/task_lifecycle.go.

    Pending ──▶ Prestart ──▶ Running ──▶ Exited ──▶ (restart? back to Prestart)
                                 │                        │
                               Kill ──────────────────▶ Stop ──▶ Terminal (dead)

A hook implements only the phases it needs. Prestart hooks run in the order of
task_runner_hooks.py before every start; one that answers `done=True` is not run again
for the life of the task runner (artifacts are not re-downloaded on a restart). A hook
that fails raises `HookError` carrying the task event to emit (Nomad's hookError).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from nomadpaas.agent.client.allocdir import AllocDir, TaskDir

EmitEvent = Callable[[dict[str, Any]], None]


class HookError(Exception):
    """A hook failed: `event` is emitted instead of a generic `Task hook failed`, and
    `recoverable` tells the restart tracker whether the policy may retry."""

    def __init__(self, message: str, event: dict[str, Any] | None, *, recoverable: bool) -> None:
        super().__init__(message)
        self.event = event
        self.recoverable = recoverable


@dataclass
class TaskPrestartRequest:
    alloc: Mapping[str, Any]
    task: Mapping[str, Any]
    alloc_dir: AllocDir
    task_dir: TaskDir
    env: Mapping[str, str]  # the complete task environment (taskenv.build_task_env)
    emit: EmitEvent
    restoring: bool = False  # re-attaching to a task that outlived the agent: no side effects
    # Appends an event that the task's next state update carries, without an update of its
    # own: for an event a quick step follows at once (the task dir's `Task Setup`). None:
    # use `emit`.
    record: EmitEvent | None = None


@dataclass
class TaskPrestartResponse:
    done: bool = False  # never run this hook again for this task runner


@dataclass
class TaskStopRequest:
    alloc: Mapping[str, Any]
    task: Mapping[str, Any]
    task_dir: TaskDir
    extra: dict[str, Any] = field(default_factory=dict)


class TaskHook(Protocol):
    name: str


@runtime_checkable
class TaskPrestartHook(Protocol):
    name: str

    def prestart(self, req: TaskPrestartRequest) -> TaskPrestartResponse: ...


@runtime_checkable
class TaskPoststartHook(Protocol):
    name: str

    def poststart(self, alloc: Mapping[str, Any], task: Mapping[str, Any]) -> None: ...


@runtime_checkable
class TaskPreKillHook(Protocol):
    name: str

    def prekill(self, alloc: Mapping[str, Any], task: Mapping[str, Any]) -> None: ...


@runtime_checkable
class TaskExitedHook(Protocol):
    name: str

    def exited(self, alloc: Mapping[str, Any], task: Mapping[str, Any]) -> None: ...


@runtime_checkable
class TaskStopHook(Protocol):
    """Runs once when the task is terminal (dead), never on agent shutdown."""

    name: str

    def stop(self, req: TaskStopRequest) -> None: ...
