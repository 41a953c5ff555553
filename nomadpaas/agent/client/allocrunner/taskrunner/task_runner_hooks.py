"""The task runner's hooks, in the order they run; mirrors
client/allocrunner/taskrunner/task_runner_hooks.go.

Prestart order (nomad-api.md §9): validate → task dir (`Task Setup`) → logmon →
dispatch payload → artifacts (`Downloading Artifacts`); identity, volumes, templates
and services come in later issues and slot in here.
"""

from __future__ import annotations

from nomadpaas.agent.client.allocrunner.taskrunner.artifact_hook import ArtifactHook
from nomadpaas.agent.client.allocrunner.taskrunner.dispatch_hook import DispatchHook
from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import TaskHook
from nomadpaas.agent.client.allocrunner.taskrunner.logmon_hook import LogmonHook
from nomadpaas.agent.client.allocrunner.taskrunner.task_dir_hook import TaskDirHook
from nomadpaas.agent.client.allocrunner.taskrunner.validate_hook import ValidateHook
from nomadpaas.agent.client.getter.getter import GetterConfig
from nomadpaas.agent.client.logmon.logmon import LogMon


def build_task_hooks(logmon: LogMon, getter_config: GetterConfig | None = None) -> list[TaskHook]:
    """A fresh, ordered hook list for one task runner."""
    return [
        ValidateHook(),
        TaskDirHook(),
        LogmonHook(logmon),
        DispatchHook(),
        ArtifactHook(getter_config),
    ]
