"""Downloads the task's artifacts before it starts (`Downloading Artifacts`); mirrors
client/allocrunner/taskrunner/artifact_hook.go.

Done once per task runner: a restart does not download again. A failure emits
`Failed Artifact Download` and the restart policy applies, unless the error is
unrecoverable (a refused archive, a bad checksum, a bad URL).
"""

from __future__ import annotations

import time
from pathlib import Path

from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import (
    HookError,
    TaskPrestartRequest,
    TaskPrestartResponse,
)
from nomadpaas.agent.client.getter.errors import ArtifactError
from nomadpaas.agent.client.getter.getter import GetterConfig, get_artifact
from nomadpaas.agent.structs.alloc import (
    TASK_ARTIFACT_DOWNLOAD_FAILED,
    TASK_DOWNLOADING_ARTIFACTS,
    new_task_event,
)


class ArtifactHook:
    name = "artifacts"

    def __init__(self, config: GetterConfig | None = None) -> None:
        self._config = config

    def prestart(self, req: TaskPrestartRequest) -> TaskPrestartResponse:
        artifacts = req.task.get("Artifacts") or []
        if not artifacts or req.restoring:
            return TaskPrestartResponse(done=True)
        req.emit(new_task_event(TASK_DOWNLOADING_ARTIFACTS, now_ns=time.time_ns()))
        for artifact in artifacts:
            try:
                get_artifact(
                    artifact,
                    Path(req.task_dir.dir),
                    Path(req.alloc_dir.root),
                    req.env,
                    config=self._config,
                )
            except ArtifactError as exc:
                event = new_task_event(
                    TASK_ARTIFACT_DOWNLOAD_FAILED, now_ns=time.time_ns(), DownloadError=exc.message
                )
                raise HookError(exc.message, event, recoverable=exc.recoverable) from exc
        return TaskPrestartResponse(done=True)
