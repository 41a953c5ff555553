"""Where the build task finds its source when it came as the dispatch payload.

The platform sends a source whose tarball fits Nomad's dispatch payload limit (16 KiB)
as the dispatch `Payload`, with its sha256 as the meta `source_sha256`; Nomad writes the
payload to `<task dir>/local/<DispatchPayload.File>` before the task starts (nomad-api.md
§1.7), and the `nomadpaas-build` job names that file `PAYLOAD_FILE`. The task builds
from it, once its digest matches (task.py), instead of fetching `source_url`.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["PAYLOAD_FILE", "payload_path"]

#: The job's task `DispatchPayload.File` (nomadpaas/jobs/build.nomad.json).
PAYLOAD_FILE = "source.tar.gz"


def payload_path(environ: Mapping[str, str]) -> str | None:
    """The dispatch payload's path in this task's `local/` dir (NOMAD_TASK_DIR), or None
    when the dispatch carried none (Nomad writes no file then)."""
    task_dir = environ.get("NOMAD_TASK_DIR") or ""
    if not task_dir:
        return None
    path = os.path.join(task_dir, PAYLOAD_FILE)
    return path if os.path.isfile(path) else None
