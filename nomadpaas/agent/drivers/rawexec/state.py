"""Thread-safe map of task ID → running task for one driver; mirrors drivers/rawexec/state.go."""

from __future__ import annotations

import threading

from nomadpaas.agent.drivers.rawexec.handle import TaskProcess


class TaskStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskProcess] = {}

    def get(self, task_id: str) -> TaskProcess | None:
        with self._lock:
            return self._tasks.get(task_id)

    def put(self, task_id: str, proc: TaskProcess) -> None:
        with self._lock:
            self._tasks[task_id] = proc

    def delete(self, task_id: str) -> None:
        with self._lock:
            self._tasks.pop(task_id, None)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._tasks)
