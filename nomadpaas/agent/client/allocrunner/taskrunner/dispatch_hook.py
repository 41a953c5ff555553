"""Writes a dispatched job's payload to `local/<File>`; mirrors
client/allocrunner/taskrunner/dispatch_hook.go."""

from __future__ import annotations

import base64
import binascii
import os
import time

from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import (
    HookError,
    TaskPrestartRequest,
    TaskPrestartResponse,
)
from nomadpaas.agent.structs.alloc import TASK_SETUP_FAILURE, new_task_event

# Nomad writes the payload world-writable (os.WriteFile(path, payload, 0777)).
PAYLOAD_PERMS = 0o777


class DispatchHook:
    name = "dispatch_payload"

    def prestart(self, req: TaskPrestartRequest) -> TaskPrestartResponse:
        config = req.task.get("DispatchPayload") or {}
        file_name = str(config.get("File") or "")
        payload = (req.alloc.get("Job") or {}).get("Payload")
        if not file_name or not payload or req.restoring:
            return TaskPrestartResponse(done=True)
        try:
            data = base64.b64decode(str(payload), validate=True)
            local = os.path.realpath(req.task_dir.local_dir)
            dest = os.path.realpath(os.path.join(local, file_name))
            if not dest.startswith(local + os.sep):
                raise ValueError(f"dispatch payload file {file_name!r} escapes the task dir")
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)
            os.chmod(dest, PAYLOAD_PERMS)
        except (binascii.Error, ValueError, OSError) as exc:
            message = f"failed to write dispatch payload: {exc}"
            event = new_task_event(
                TASK_SETUP_FAILURE, now_ns=time.time_ns(), SetupError=message, FailsTask=True
            )
            raise HookError(message, event, recoverable=False) from exc
        return TaskPrestartResponse(done=True)
