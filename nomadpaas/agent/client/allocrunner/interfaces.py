"""The alloc runner's hook phases as small protocols; mirrors
client/allocrunner/interfaces/runner_lifecycle.go.

    prerun (alloc dir) ─▶ tasks run ─▶ prekill (group shutdown delay) ─▶ kill tasks
                           │  ├ task_states_updated (every change)             │
                           │  └ update (new version from the server)           ▼
                           └──────────────────────────────▶ postrun (all dead) ─▶ destroy
    shutdown: the agent exits (tasks keep running)

Hooks added by later issues (group services, health) come in through
`AllocRunnerConfig.extra_hooks` and run between the alloc dir hook and the group
shutdown delay (so services deregister before the delay, as in Nomad).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from nomadpaas.agent.client.allocdir import AllocDir


@runtime_checkable
class RunnerPrerunHook(Protocol):
    name: str

    def prerun(self, alloc: Mapping[str, Any], alloc_dir: AllocDir) -> None: ...


@runtime_checkable
class RunnerPreKillHook(Protocol):
    """Runs before the tasks of a stopping allocation are killed (services deregister,
    group ShutdownDelay)."""

    name: str

    def prekill(self, alloc: Mapping[str, Any]) -> None: ...


@runtime_checkable
class RunnerDestroyHook(Protocol):
    name: str

    def destroy(self, alloc: Mapping[str, Any], alloc_dir: AllocDir) -> None: ...


@runtime_checkable
class RunnerUpdateHook(Protocol):
    name: str

    def update(self, alloc: Mapping[str, Any]) -> None: ...


@runtime_checkable
class RunnerTaskStateHook(Protocol):
    """Told about every task state change (the health tracker's input); must not block."""

    name: str

    def task_states_updated(self, alloc: Mapping[str, Any], states: dict[str, Any]) -> None: ...


@runtime_checkable
class RunnerPostrunHook(Protocol):
    """Runs once every task is dead."""

    name: str

    def postrun(self, alloc: Mapping[str, Any]) -> None: ...


@runtime_checkable
class RunnerShutdownHook(Protocol):
    """The agent exits: stop background work, leave the tasks (and registrations) alone."""

    name: str

    def shutdown(self) -> None: ...


class AllocUpdater(Protocol):
    """Where the alloc runner sends its client-side updates (the client batches them)."""

    def __call__(self, update: dict[str, Any], urgent: bool) -> None: ...
