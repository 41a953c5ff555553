"""Starts (or re-attaches) log capture of the task's stdout/stderr FIFOs into
`alloc/logs/<task>.<stream>.<n>`; mirrors client/allocrunner/taskrunner/logmon_hook.go.

Runs before every start, also when re-attaching after an agent restart (the FIFOs
buffered the output meanwhile); stops only when the task is dead for good.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nomadpaas.agent.client.allocdir import TaskDir
from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import (
    HookError,
    TaskPrestartRequest,
    TaskPrestartResponse,
    TaskStopRequest,
)
from nomadpaas.agent.client.logmon.logmon import MIB, LogMon, LogmonConfig, LogMonError
from nomadpaas.agent.structs.task import DEFAULT_LOG_MAX_FILE_SIZE_MB, DEFAULT_LOG_MAX_FILES


def logmon_key(alloc_id: str, task: str) -> str:
    return f"{alloc_id}/{task}"


def logmon_config(task: Mapping[str, Any], task_dir: TaskDir) -> LogmonConfig:
    log_config = task.get("LogConfig") or {}
    name = str(task["Name"])
    return LogmonConfig(
        log_dir=task_dir.log_dir,
        stdout_log_file=f"{name}.stdout",
        stderr_log_file=f"{name}.stderr",
        stdout_fifo=task_dir.stdout_fifo,
        stderr_fifo=task_dir.stderr_fifo,
        max_files=int(log_config.get("MaxFiles") or DEFAULT_LOG_MAX_FILES),
        max_file_size_bytes=int(log_config.get("MaxFileSizeMB") or DEFAULT_LOG_MAX_FILE_SIZE_MB)
        * MIB,
    )


class LogmonHook:
    name = "logmon"

    def __init__(self, logmon: LogMon) -> None:
        self._logmon = logmon

    def prestart(self, req: TaskPrestartRequest) -> TaskPrestartResponse:
        key = logmon_key(str(req.alloc["ID"]), str(req.task["Name"]))
        try:
            self._logmon.start(key, logmon_config(req.task, req.task_dir))
        except (LogMonError, OSError) as exc:
            raise HookError(f"logmon: {exc}", None, recoverable=True) from exc
        return TaskPrestartResponse(done=False)

    def stop(self, req: TaskStopRequest) -> None:
        try:
            self._logmon.stop(logmon_key(str(req.alloc["ID"]), str(req.task["Name"])))
        except LogMonError:
            pass  # logmon already closed (agent shutting down): nothing left to flush
