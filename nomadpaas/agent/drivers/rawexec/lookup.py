"""Where a raw_exec task's command is found, as Nomad's executor looks it up; mirrors
lookupBin in drivers/shared/executor/executor.go (local/, the task dir, an absolute host
path, then $PATH), with $PATH lookups remembered briefly.
"""

from __future__ import annotations

import os
import shutil
import time

from nomadpaas.agent.drivers.base import DriverError

# $PATH lookups are remembered this long (a binary installed earlier on $PATH meanwhile
# is found after at most this), for at most this many commands.
WHICH_CACHE_S = 1.0
WHICH_CACHE_SIZE = 256
_WHICH_CACHE: dict[tuple[str, str], tuple[str, float]] = {}


def lookup_bin(task_dir: str, command: str) -> str:
    """Find the binary as Nomad's executor does: local/, task dir, absolute host path, $PATH."""
    relative = command.lstrip("/")
    for candidate in (os.path.join(task_dir, "local", relative), os.path.join(task_dir, relative)):
        if relative and os.path.exists(candidate):
            return candidate
    if command.startswith("/") and os.path.exists(command):
        return command
    if "/" not in command:
        found = _which(command)
        if found:
            return found
    raise DriverError(f'binary "{command}" could not be found')


def _which(command: str) -> str | None:
    """`shutil.which`, remembered for `WHICH_CACHE_S`: a burst of starts of one command
    (a thousand allocations of a job) walks $PATH once, not once per task. A remembered
    path is still checked to be executable; a miss is never remembered."""
    key = (command, os.environ.get("PATH", ""))
    now = time.monotonic()
    hit = _WHICH_CACHE.get(key)
    if hit is not None and hit[1] > now and os.access(hit[0], os.X_OK):
        return hit[0]
    found = shutil.which(command)
    if found is None:
        _WHICH_CACHE.pop(key, None)
        return None
    if len(_WHICH_CACHE) >= WHICH_CACHE_SIZE:
        _WHICH_CACHE.clear()
    _WHICH_CACHE[key] = (found, now + WHICH_CACHE_S)
    return found
