"""The embedded stack on one machine: agent + durable S3 (+ router), up/down/doctor.

`up` starts the servers detached under NOMADPAAS_HOME and records them in `stack.json`;
`down` stops exactly those processes; `doctor` checks every endpoint the platform needs.
"""

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
