"""A field-level job diff in the JobDiff shape; a simple cut of nomad/structs/diff.go.

Nested objects are flattened to dotted field names (`Update.MaxParallel`,
`Config.command`) rather than Nomad's nested ObjectDiffs; groups and tasks are matched
by name like Nomad does. Only changed fields are listed.
"""

from __future__ import annotations

import json
from typing import Any

from nomadpaas.agent.structs.job import SERVER_ONLY_FIELDS

DIFF_ADDED = "Added"
DIFF_DELETED = "Deleted"
DIFF_EDITED = "Edited"
DIFF_NONE = "None"
_IGNORED = set(SERVER_ONLY_FIELDS) - {"Stop"}


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key in sorted(value):
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list | tuple) and any(isinstance(v, dict) for v in value):
        for i, item in enumerate(value):
            _flatten(item, f"{prefix}[{i}]", out)
    elif value is not None:
        out[prefix] = value if isinstance(value, str) else json.dumps(value)


def _fields(old: dict[str, Any] | None, new: dict[str, Any] | None, skip: set[str]) -> list[Any]:
    a: dict[str, str] = {}
    b: dict[str, str] = {}
    _flatten({k: v for k, v in (old or {}).items() if k not in skip}, "", a)
    _flatten({k: v for k, v in (new or {}).items() if k not in skip}, "", b)
    out = []
    for name in sorted(set(a) | set(b)):
        if a.get(name) == b.get(name):
            continue
        kind = DIFF_ADDED if name not in a else DIFF_DELETED if name not in b else DIFF_EDITED
        out.append(
            {"Type": kind, "Name": name, "Old": a.get(name, ""), "New": b.get(name, ""),
             "Annotations": None}
        )  # fmt: skip
    return out


def _kind(old: Any, new: Any, changed: bool) -> str:
    if old is None:
        return DIFF_ADDED
    if new is None:
        return DIFF_DELETED
    return DIFF_EDITED if changed else DIFF_NONE


def _by_name(items: Any) -> dict[str, Any]:
    return {i["Name"]: i for i in items or ()}


def _task_diffs(old_group: Any, new_group: Any) -> list[Any]:
    old_tasks, new_tasks = (
        _by_name((old_group or {}).get("Tasks")),
        _by_name((new_group or {}).get("Tasks")),
    )
    out = []
    for name in sorted(set(old_tasks) | set(new_tasks)):
        fields = _fields(old_tasks.get(name), new_tasks.get(name), set())
        kind = _kind(old_tasks.get(name), new_tasks.get(name), bool(fields))
        out.append(
            {"Type": kind, "Name": name, "Fields": fields or None, "Objects": None,
             "Annotations": None}
        )  # fmt: skip
    return out


def job_diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    """The JobDiff from `old` to `new` (either may be None)."""
    fields = _fields(old, new, _IGNORED | {"TaskGroups"})
    groups = []
    old_groups = _by_name((old or {}).get("TaskGroups"))
    new_groups = _by_name((new or {}).get("TaskGroups"))
    for name in sorted(set(old_groups) | set(new_groups)):
        g_fields = _fields(old_groups.get(name), new_groups.get(name), {"Tasks"})
        tasks = _task_diffs(old_groups.get(name), new_groups.get(name))
        changed = bool(g_fields) or any(t["Type"] != DIFF_NONE for t in tasks)
        groups.append(
            {
                "Type": _kind(old_groups.get(name), new_groups.get(name), changed),
                "Name": name,
                "Fields": g_fields or None,
                "Objects": None,
                "Tasks": tasks or None,
                "Updates": None,
            }
        )
    changed = bool(fields) or any(g["Type"] != DIFF_NONE for g in groups)
    return {
        "Type": _kind(old, new, changed),
        "ID": (new or old or {}).get("ID", ""),
        "Fields": fields or None,
        "Objects": None,
        "TaskGroups": groups or None,
    }
