"""An alloc runner's configuration; mirrors client/allocrunner/config.go (Config)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nomadpaas.agent.client.allocrunner.alloc_runner_hooks import RunnerHook
from nomadpaas.agent.client.allocrunner.interfaces import AllocUpdater
from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import TaskHook
from nomadpaas.agent.client.allocrunner.taskrunner.restarts import RestartTracker
from nomadpaas.agent.client.allocrunner.taskrunner.task_config import (
    DEFAULT_MAX_KILL_TIMEOUT_NS,
)
from nomadpaas.agent.client.allocrunner.workers import SHARED_POOL, RunnerPool
from nomadpaas.agent.client.state import ClientStateDB, RestoredAlloc
from nomadpaas.agent.drivers.base import Driver

if TYPE_CHECKING:  # the runner the extra hooks are built for; a cycle only for mypy
    from nomadpaas.agent.client.allocrunner.alloc_runner import AllocRunner


@dataclass
class AllocRunnerConfig:
    alloc: dict[str, Any]
    data_dir: str
    driver: Driver
    state_db: ClientStateDB
    node: Mapping[str, Any]
    updater: AllocUpdater
    task_hooks: Callable[[], list[TaskHook]]  # a fresh ordered hook list per task
    max_kill_timeout_ns: int = DEFAULT_MAX_KILL_TIMEOUT_NS
    host_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    restored: RestoredAlloc | None = None
    tracker_factory: Callable[[dict[str, Any], dict[str, Any]], RestartTracker] | None = None
    # Hooks of later issues (group services, health), built per runner.
    extra_hooks: Callable[[AllocRunner], list[RunnerHook]] | None = None
    pool: RunnerPool = field(default_factory=lambda: SHARED_POOL)
