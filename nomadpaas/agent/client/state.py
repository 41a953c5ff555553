"""The client's local state, so a restarted agent re-attaches to its tasks; mirrors
client/state/state_database.go.

Layout under `<data_dir>/client/state/`::

    allocs/<alloc_id>/alloc.json          the allocation as last received from the server
    allocs/<alloc_id>/task-<name>.json    {"TaskState": ..., "Handle": ..., "HooksDone": [...]}

Every write goes to a temp file, is fsync'd and renamed over the old one, so a `kill -9`
leaves either the old or the new version, never a torn file. Rows are JSON objects in
Nomad's shapes (`TaskState`, `drivers.TaskHandle`).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALLOC_FILE = "alloc.json"
TASK_PREFIX = "task-"
JSON_SUFFIX = ".json"


@dataclass
class LocalTaskState:
    """One task runner's persisted state (Nomad: state.LocalState + TaskState)."""

    task_state: dict[str, Any]
    handle: dict[str, Any] | None = None  # drivers.TaskHandle.to_dict(), None when not running
    hooks_done: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"TaskState": self.task_state, "Handle": self.handle, "HooksDone": self.hooks_done}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LocalTaskState:
        return cls(
            task_state=dict(data["TaskState"]),
            handle=data.get("Handle"),
            hooks_done=list(data.get("HooksDone") or []),
        )


@dataclass
class RestoredAlloc:
    alloc: dict[str, Any]
    tasks: dict[str, LocalTaskState]


class ClientStateDB:
    """Thread-safe reads and atomic writes of allocations and task states."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "client" / "state" / "allocs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _alloc_dir(self, alloc_id: str) -> Path:
        if not alloc_id or "/" in alloc_id or alloc_id in (".", ".."):
            raise ValueError(f"invalid allocation ID {alloc_id!r}")
        return self.root / alloc_id

    def put_alloc(self, alloc: dict[str, Any]) -> None:
        with self._lock:
            _atomic_write(self._alloc_dir(str(alloc["ID"])) / ALLOC_FILE, alloc)

    def put_task(self, alloc_id: str, task: str, state: LocalTaskState) -> None:
        if "/" in task:
            raise ValueError(f"invalid task name {task!r}")
        with self._lock:
            path = self._alloc_dir(alloc_id) / f"{TASK_PREFIX}{task}{JSON_SUFFIX}"
            if not path.parent.exists():
                return  # the allocation was deleted meanwhile: do not resurrect it
            _atomic_write(path, state.to_json())

    def delete_alloc(self, alloc_id: str) -> None:
        with self._lock:
            shutil.rmtree(self._alloc_dir(alloc_id), ignore_errors=True)

    def all_allocs(self) -> list[RestoredAlloc]:
        """Every saved allocation with its tasks; unreadable entries are skipped."""
        out: list[RestoredAlloc] = []
        with self._lock:
            for entry in sorted(self.root.iterdir()):
                try:
                    alloc = json.loads((entry / ALLOC_FILE).read_text())
                except (OSError, ValueError):
                    continue
                tasks: dict[str, LocalTaskState] = {}
                for f in entry.glob(f"{TASK_PREFIX}*{JSON_SUFFIX}"):
                    name = f.name[len(TASK_PREFIX) : -len(JSON_SUFFIX)]
                    try:
                        tasks[name] = LocalTaskState.from_json(json.loads(f.read_text()))
                    except (OSError, ValueError, KeyError):
                        continue
                out.append(RestoredAlloc(alloc, tasks))
        return out


def _atomic_write(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps(obj, separators=(",", ":")).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
