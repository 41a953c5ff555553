"""Builds the task's directories (`Task Setup`); mirrors
client/allocrunner/taskrunner/task_dir_hook.go."""

from __future__ import annotations

import time

from nomadpaas.agent.client.allocdir import AllocDirError
from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import (
    HookError,
    TaskPrestartRequest,
    TaskPrestartResponse,
)
from nomadpaas.agent.structs.alloc import TASK_SETUP, TASK_SETUP_FAILURE, new_task_event

MSG_BUILDING_TASK_DIR = "Building Task Directory"


class TaskDirHook:
    name = "task_dir"

    def prestart(self, req: TaskPrestartRequest) -> TaskPrestartResponse:
        if not req.restoring:
            # Recorded, not pushed on its own: the next event of this start (the next hook's,
            # a failure's, `Started`) follows within the same step and carries it.
            (req.record or req.emit)(
                new_task_event(TASK_SETUP, now_ns=time.time_ns(), Message=MSG_BUILDING_TASK_DIR)
            )
        try:
            req.alloc_dir.build([str(req.task["Name"])])
        except (AllocDirError, OSError) as exc:
            message = f"failed to build task directory for {req.task['Name']!r}: {exc}"
            event = new_task_event(
                TASK_SETUP_FAILURE, now_ns=time.time_ns(), SetupError=message, FailsTask=True
            )
            raise HookError(message, event, recoverable=False) from exc
        return TaskPrestartResponse(done=True)
