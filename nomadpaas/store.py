"""Where an app's records live in Nomad Variables (DESIGN.md §3), and the store they need.

    nomadpaas/apps/<app>                   app record (name, created_at, latest_release)
    nomadpaas/apps/<app>/config            config vars (Items = the vars)
    nomadpaas/apps/<app>/releases/v<N>     one immutable release

`VariableStore` is the consumer-side interface of `nomadpaas.nomad.Variables`; unit tests
pass an in-memory fake with the same check-and-set semantics.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Protocol

from nomadpaas.nomad.variables import Variable, VariableMetadata

__all__ = [
    "APPS_PREFIX",
    "CAS_ATTEMPTS",
    "VariableStore",
    "app_path",
    "backoff",
    "config_path",
    "release_path",
    "releases_prefix",
]

APPS_PREFIX = "nomadpaas/apps/"
#: How many times a check-and-set write is retried after losing a race. Each retry re-reads
#: the variable, so a loss means someone else made progress; 100 covers dozens of
#: concurrent writers on one app, and a bounded loop can never spin forever.
CAS_ATTEMPTS = 100
#: Upper bound of the random pause between CAS retries, seconds: short enough not to be
#: noticed, long enough to spread racing writers apart.
_BACKOFF_MAX_S = 0.05


class VariableStore(Protocol):
    """What the app, config and release records need from Nomad Variables."""

    def get(self, path: str) -> Variable | None: ...

    def put(self, path: str, items: Mapping[str, str], cas: int | None = None) -> Variable: ...

    def delete(self, path: str, cas: int | None = None) -> None: ...

    def list(self, prefix: str = "") -> list[VariableMetadata]: ...


def app_path(app: str) -> str:
    return f"{APPS_PREFIX}{app}"


def config_path(app: str) -> str:
    return f"{APPS_PREFIX}{app}/config"


def releases_prefix(app: str) -> str:
    return f"{APPS_PREFIX}{app}/releases/"


def release_path(app: str, version: int) -> str:
    return f"{releases_prefix(app)}v{version}"


def backoff(attempt: int) -> None:
    """Sleep a little, with jitter, before CAS retry number `attempt` (0-based)."""
    if attempt > 0:
        time.sleep(random.uniform(0, min(_BACKOFF_MAX_S, 0.002 * 2**attempt)))
