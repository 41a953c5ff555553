"""Checks a task can run here before anything is built; mirrors
client/allocrunner/taskrunner/validate_hook.go."""

from __future__ import annotations

import time

from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import (
    HookError,
    TaskPrestartRequest,
    TaskPrestartResponse,
)
from nomadpaas.agent.structs.alloc import TASK_FAILED_VALIDATION, new_task_event

SUPPORTED_DRIVERS = ("raw_exec",)


class ValidateHook:
    name = "validate"

    def prestart(self, req: TaskPrestartRequest) -> TaskPrestartResponse:
        problems = []
        driver = str(req.task.get("Driver") or "")
        if driver not in SUPPORTED_DRIVERS:
            problems.append(f'driver "{driver}" is not supported by this client')
        config = req.task.get("Config") or {}
        if not str(config.get("command") or ""):
            problems.append('missing required driver config "command"')
        if problems:
            text = "".join(f"\t* {p}\n" for p in problems)
            message = f"{len(problems)} error{'s' if len(problems) > 1 else ''} occurred:\n{text}\n"
            event = new_task_event(
                TASK_FAILED_VALIDATION,
                now_ns=time.time_ns(),
                ValidationError=message,
                FailsTask=True,
            )
            raise HookError(message, event, recoverable=False)
        return TaskPrestartResponse(done=True)
