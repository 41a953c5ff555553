"""The embedded stack on one machine: agent + durable S3 (+ router), up/down/doctor.

`up` starts the servers detached under NOMADPAAS_HOME and records them in `stack.json`;
`down` stops exactly those processes; `doctor` checks every endpoint the platform needs.

Names are loaded lazily: `python -m nomadpaas.stack.s3server` and `nomadpaas --help` must not
pay for (or depend on) the stack manager's imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nomadpaas.stack.doctor import Check, DoctorReport, diagnose
    from nomadpaas.stack.embedded import (
        DEFAULT_CONSUL_PORT,
        DEFAULT_NOMAD_PORT,
        DEFAULT_S3_PORT,
        DownResult,
        StackEvent,
        UpResult,
        down,
        running,
        up,
    )
    from nomadpaas.stack.process import ProcessRecord
    from nomadpaas.stack.record import StackRecord, load_record, shell_exports

_LAZY: dict[str, str] = {
    "Check": "nomadpaas.stack.doctor",
    "DEFAULT_CONSUL_PORT": "nomadpaas.stack.embedded",
    "DEFAULT_NOMAD_PORT": "nomadpaas.stack.embedded",
    "DEFAULT_S3_PORT": "nomadpaas.stack.embedded",
    "DoctorReport": "nomadpaas.stack.doctor",
    "DownResult": "nomadpaas.stack.embedded",
    "ProcessRecord": "nomadpaas.stack.process",
    "StackEvent": "nomadpaas.stack.embedded",
    "StackRecord": "nomadpaas.stack.record",
    "UpResult": "nomadpaas.stack.embedded",
    "diagnose": "nomadpaas.stack.doctor",
    "down": "nomadpaas.stack.embedded",
    "load_record": "nomadpaas.stack.record",
    "running": "nomadpaas.stack.embedded",
    "shell_exports": "nomadpaas.stack.record",
    "up": "nomadpaas.stack.embedded",
}

__all__ = [
    "DEFAULT_CONSUL_PORT",
    "DEFAULT_NOMAD_PORT",
    "DEFAULT_S3_PORT",
    "Check",
    "DoctorReport",
    "DownResult",
    "ProcessRecord",
    "StackEvent",
    "StackRecord",
    "UpResult",
    "diagnose",
    "down",
    "load_record",
    "running",
    "shell_exports",
    "up",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nomadpaas.stack' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
