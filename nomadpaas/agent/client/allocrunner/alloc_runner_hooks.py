"""The alloc runner's hooks, in the order they run; mirrors
client/allocrunner/alloc_runner_hooks.go.

Issue 4 adds the group service hook (deregister services before the shutdown delay)
and the health hook here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from nomadpaas.agent.client.allocdir import AllocDir, AllocDirError
from nomadpaas.agent.structs.duration import NS_PER_S

log = logging.getLogger("nomadpaas.agent.client.allocrunner")

RunnerHook = Any  # any object implementing some of the Runner*Hook protocols

# Guards the lazy creation of each GroupShutdownDelayHook's Event: taken only on a stop
# with a delay and on agent shutdown, so one lock for all hooks costs nothing.
_WAKE_LOCK = threading.Lock()


class AllocDirHook:
    """Builds `<data_dir>/alloc/<id>` before any task runs; removes it on destroy."""

    name = "alloc_dir"

    def prerun(self, alloc: Mapping[str, Any], alloc_dir: AllocDir) -> None:
        alloc_dir.build([])

    def destroy(self, alloc: Mapping[str, Any], alloc_dir: AllocDir) -> None:
        try:
            alloc_dir.destroy()
        except AllocDirError as exc:
            log.warning("alloc %s: %s", alloc.get("ID"), exc)


class GroupShutdownDelayHook:
    """Waits the group's ShutdownDelay before a stopping allocation's tasks are killed,
    unless the stop asked for `no_shutdown_delay` (DesiredTransition.NoShutdownDelay).
    The wait ends early, or is skipped, once `cancel_wait()` was called (agent shutdown).

    The Event to wait on is made only when a delay is actually waited: most groups have
    none, and every allocation builds this hook on the client's watch thread."""

    name = "group_shutdown_delay"

    def __init__(self) -> None:
        self._cancelled = False
        self._wake: threading.Event | None = None

    def cancel_wait(self) -> None:
        with _WAKE_LOCK:
            self._cancelled = True
            wake = self._wake
        if wake is not None:
            wake.set()

    def prekill(self, alloc: Mapping[str, Any]) -> None:
        group = _group(alloc)
        delay_ns = int(group.get("ShutdownDelay") or 0)
        if delay_ns <= 0 or (alloc.get("DesiredTransition") or {}).get("NoShutdownDelay"):
            return
        with _WAKE_LOCK:
            if self._cancelled:
                return
            if self._wake is None:
                self._wake = threading.Event()
            wake = self._wake
        # Group services were deregistered by the hook before this one (group_service_hook).
        wake.wait(delay_ns / NS_PER_S)


def _group(alloc: Mapping[str, Any]) -> Mapping[str, Any]:
    for group in (alloc.get("Job") or {}).get("TaskGroups") or []:
        if group.get("Name") == alloc.get("TaskGroup"):
            return dict(group)
    return {}


def build_runner_hooks(extra: list[RunnerHook] | None = None) -> list[RunnerHook]:
    """The ordered hooks of one alloc runner; `extra` (group services, health) run after
    the alloc dir is built and, on stop, before the group shutdown delay."""
    return [AllocDirHook(), *(extra or []), GroupShutdownDelayHook()]
