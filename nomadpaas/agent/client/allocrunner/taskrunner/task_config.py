"""Builds what the driver gets for one start (environment, command, paths) and the kill
parameters; mirrors TaskRunner.buildTaskConfig and the kill timeout rules of
client/allocrunner/taskrunner/task_runner.go."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from nomadpaas.agent.client.allocdir import AllocDir, TaskDir
from nomadpaas.agent.client.taskenv import build_task_env, interpolate_args
from nomadpaas.agent.drivers.base import TaskConfig
from nomadpaas.agent.structs.alloc import TASK_KILLING, new_task_event
from nomadpaas.agent.structs.duration import NS_PER_S

DEFAULT_MAX_KILL_TIMEOUT_NS = 30 * NS_PER_S  # the client's max_kill_timeout


def kill_timeout_ns(task: Mapping[str, Any], max_kill_timeout_ns: int) -> int:
    """min(task KillTimeout, the client's max_kill_timeout)."""
    return min(int(task.get("KillTimeout") or 0), max_kill_timeout_ns)


def killing_event(task: Mapping[str, Any], max_kill_timeout_ns: int) -> dict[str, Any]:
    """`Killing` with the effective KillTimeout ("Sent interrupt. Waiting 5s before ...")."""
    return new_task_event(
        TASK_KILLING,
        now_ns=time.time_ns(),
        KillTimeout=kill_timeout_ns(task, max_kill_timeout_ns),
    )


def task_ports(alloc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The group's allocated ports (`AllocatedResources.Shared.Ports`)."""
    shared = (alloc.get("AllocatedResources") or {}).get("Shared") or {}
    return [dict(p) for p in shared.get("Ports") or []]


def task_env(
    alloc: Mapping[str, Any],
    task: Mapping[str, Any],
    node: Mapping[str, Any],
    alloc_dir: AllocDir,
    host_env: Mapping[str, str],
) -> dict[str, str]:
    """The task's complete environment (host env minus the denylist, NOMAD_*, task Env)."""
    return build_task_env(alloc, task, node, task_ports(alloc), alloc_dir.root, host_env=host_env)


def driver_task_config(
    task_id: str,
    alloc: Mapping[str, Any],
    task: Mapping[str, Any],
    node: Mapping[str, Any],
    alloc_dir: AllocDir,
    task_dir: TaskDir,
    env: dict[str, str],
) -> TaskConfig:
    """The raw_exec TaskConfig: `command`/`args` interpolated, output into logmon's FIFOs;
    `env` is the task's complete environment (`task_env`, built once per start)."""
    config = task.get("Config") or {}
    command, *args = interpolate_args(
        [str(config.get("command") or ""), *[str(a) for a in config.get("args") or []]],
        env,
        node,
    )
    return TaskConfig(
        id=task_id,
        alloc_id=str(alloc["ID"]),
        name=str(task["Name"]),
        command=command,
        args=tuple(args),
        env=env,
        alloc_dir=alloc_dir.root,
        task_dir=task_dir.dir,
        work_dir=str(config.get("work_dir") or ""),
        stdout_path=task_dir.stdout_fifo,
        stderr_path=task_dir.stderr_fifo,
        cpu_shares=_cpu_shares(alloc, str(task["Name"])),
    )


def _cpu_shares(alloc: Mapping[str, Any], task: str) -> int:
    """The task's `AllocatedResources.Tasks[task].Cpu.CpuShares` (0 when absent), as Nomad's
    task runner hands it to the driver."""
    tasks = (alloc.get("AllocatedResources") or {}).get("Tasks") or {}
    cpu = (tasks.get(task) or {}).get("Cpu") or {}
    return int(cpu.get("CpuShares") or 0)
