"""What the driver gets for one start (task_config.py): the command and args interpolated, and
the CPU shares Nomad's task runner hands over from the allocation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nomadpaas.agent.client.allocdir import AllocDir
from nomadpaas.agent.client.allocrunner.taskrunner.task_config import driver_task_config

ALLOC_ID = "5e2f2a8c-0000-4000-8000-000000000001"


def _alloc(tasks: dict[str, Any]) -> dict[str, Any]:
    return {"ID": ALLOC_ID, "AllocatedResources": {"Tasks": tasks}}


def _config(tmp_path: Path, alloc: dict[str, Any]) -> Any:
    alloc_dir = AllocDir(str(tmp_path), ALLOC_ID)
    task_dir = alloc_dir.build(["web"])["web"]
    task = {"Name": "web", "Config": {"command": "echo", "args": ["${NOMAD_TASK_NAME}"]}}
    env = {"NOMAD_TASK_NAME": "web"}
    return driver_task_config("t1", alloc, task, {}, alloc_dir, task_dir, env)


def test_the_task_gets_its_allocated_cpu_shares(tmp_path: Path) -> None:
    cfg = _config(tmp_path, _alloc({"web": {"Cpu": {"CpuShares": 250}}}))
    assert (cfg.command, cfg.args, cfg.cpu_shares) == ("echo", ("web",), 250)


def test_no_allocated_resources_means_the_default_weight(tmp_path: Path) -> None:
    assert _config(tmp_path, {"ID": ALLOC_ID}).cpu_shares == 0
    assert _config(tmp_path, _alloc({"other": {"Cpu": {"CpuShares": 9}}})).cpu_shares == 0
