"""Variables: path rules, size limit, metadata view, lock defaults; mirrors
nomad/structs/variables.go.

A stored variable row is the decrypted form Nomad returns from `GET /v1/var/:path`:
`Namespace, Path, CreateIndex, CreateTime, ModifyIndex, ModifyTime, Items` and, while
someone holds it as a lock, `Lock{ID, TTL, LockDelay}` (durations as Go strings).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from nomadpaas.agent.structs.duration import NS_PER_HOUR, NS_PER_S

# RFC 3986 URL-safe characters that do not clash with "@" and "." in template blocks;
# the length cap keeps state-store prefix scans cheap (Nomad's reasoning).
VALID_VARIABLE_PATH = re.compile(r"^[a-zA-Z0-9\-_~/]{1,128}$")
MAX_VARIABLE_SIZE_BYTES = 64 * 1024  # sum of len(key)+len(value) over Items
ALL_NAMESPACES = "*"

DEFAULT_LOCK_TTL_NS = 15 * NS_PER_S
DEFAULT_LOCK_DELAY_NS = 15 * NS_PER_S
MIN_LOCK_TTL_NS = 10 * NS_PER_S
MAX_LOCK_TTL_NS = 24 * NS_PER_HOUR

METADATA_FIELDS = ("Namespace", "Path", "CreateIndex", "CreateTime", "ModifyIndex", "ModifyTime")


def validate_path(path: str) -> str | None:
    """Nomad's path rules; returns the error text, or None when the path is fine."""
    if not path:
        return "variable requires path"
    if not VALID_VARIABLE_PATH.match(path):
        return f"invalid path {_go_quote(path)}"
    parts = path.split("/")
    if parts[0] != "nomad":
        return None
    if len(parts) == 1:
        return (
            '"nomad" is a reserved top-level directory path, but you may write variables '
            'to "nomad/jobs", "nomad/job-templates", or below'
        )
    if parts[1] == "jobs" or (parts[1] == "job-templates" and len(parts) == 3):
        return None
    if parts[1] == "job-templates":
        return (
            '"nomad/job-templates" is a reserved directory path, but you may write variables '
            'at the level below it, for example, "nomad/job-templates/template-name"'
        )
    return (
        'only paths at "nomad/jobs" or "nomad/job-templates" and below are valid paths '
        'under the top-level "nomad" directory'
    )


def validate_items(items: Mapping[str, str]) -> str | None:
    """The size rule; returns the error text or None."""
    size = sum(len(k.encode()) + len(v.encode()) for k, v in items.items())
    if size > MAX_VARIABLE_SIZE_BYTES:
        return "variables are limited to 64KiB in total size"
    return None


def metadata(row: Mapping[str, Any]) -> dict[str, Any]:
    """The VariableMetadata view (what `/v1/vars` lists): everything but Items."""
    out = {k: row.get(k) for k in METADATA_FIELDS}
    if row.get("Lock") is not None:
        out["Lock"] = row["Lock"]
    return out


def empty_variable() -> dict[str, Any]:
    """The zero VariableDecrypted Nomad sends as the conflict when CAS names a missing one."""
    return {
        "Namespace": "",
        "Path": "",
        "CreateIndex": 0,
        "CreateTime": 0,
        "ModifyIndex": 0,
        "ModifyTime": 0,
        "Items": None,
    }


def _go_quote(s: str) -> str:
    """Go's %q for the printable ASCII a rejected path usually contains."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
