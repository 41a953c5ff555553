"""Builds a task's environment and interpolates ``${...}``; mirrors client/taskenv/env.go.

Pure functions over plain dicts in Nomad's JSON shape (``alloc`` with ``Job``, the task, the node,
the allocated ports ``[{Label, Value, To, HostIP}]``). Paths are absolute host paths, as raw_exec
sees them. ``pick_dynamic_ports`` is the one impure helper: it probes ports by binding them.
"""

from __future__ import annotations

import random
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# client.env.denylist default (Nomad: helper/host.DefaultEnvDenyList).
DEFAULT_ENV_DENYLIST: frozenset[str] = frozenset(
    {
        "CONSUL_TOKEN",
        "CONSUL_HTTP_TOKEN",
        "VAULT_TOKEN",
        "NOMAD_LICENSE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "GOOGLE_APPLICATION_CREDENTIALS",
    }
)
# Nomad's default client dynamic port range (client.min/max_dynamic_port), inclusive.
MIN_DYNAMIC_PORT = 20000
MAX_DYNAMIC_PORT = 32000
_PORT_PROBE_ATTEMPTS = 200

# Keys with these prefixes embed user text (port labels, meta keys) and are cleaned.
_CLEANED_PREFIXES = (
    "NOMAD_ADDR_",
    "NOMAD_HOST_ADDR_",
    "NOMAD_IP_",
    "NOMAD_HOST_IP_",
    "NOMAD_PORT_",
    "NOMAD_HOST_PORT_",
    "NOMAD_ALLOC_PORT_",
    "NOMAD_META_",
)
_INTERPOLATION = re.compile(r"\$\{([^{}]+)\}")
_ALLOC_INDEX = re.compile(r"\[(\d+)\]$")


class PortSelectionError(Exception):
    """No free port was found in the dynamic range."""


def clean_env_var(name: str, replacement: str = "_") -> str:
    """Replace characters not valid in a variable name (Nomad: helper.CleanEnvVar)."""
    out = []
    for i, ch in enumerate(name):
        ok = ch in "_." or ("a" <= ch <= "z") or ("A" <= ch <= "Z") or (i > 0 and ch.isdigit())
        out.append(ch if ok and ch.isascii() else replacement)
    return "".join(out)


def _join_host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _group(job: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for group in job.get("TaskGroups") or []:
        if group.get("Name") == name:
            return dict(group)
    return {}


def merged_meta(alloc: Mapping[str, Any], task: Mapping[str, Any]) -> dict[str, str]:
    """Job meta, overridden by group meta, overridden by task meta."""
    job = alloc.get("Job") or {}
    meta: dict[str, str] = {}
    group = _group(job, str(alloc.get("TaskGroup", "")))
    for layer in (job.get("Meta"), group.get("Meta"), task.get("Meta")):
        meta.update({str(k): str(v) for k, v in (layer or {}).items()})
    return meta


def node_variables(node: Mapping[str, Any]) -> dict[str, str]:
    """The ``${node.*}``, ``${attr.*}`` and ``${meta.*}`` names a job may interpolate."""
    attrs = {str(k): str(v) for k, v in (node.get("Attributes") or {}).items()}
    out = {
        "node.unique.id": str(node.get("ID", "")),
        "node.unique.name": str(node.get("Name", "")),
        "node.datacenter": str(node.get("Datacenter", "")),
        "node.region": attrs.get("nomad.region", "global"),
        "node.class": str(node.get("NodeClass", "")),
        "node.pool": str(node.get("NodePool", "default")),
    }
    out.update({f"attr.{k}": v for k, v in attrs.items()})
    out.update({f"meta.{k}": str(v) for k, v in (node.get("Meta") or {}).items()})
    return out


def interpolate(text: str, env: Mapping[str, str], node_vars: Mapping[str, str]) -> str:
    """Replace ``${NAME}`` from the node variables, then the env; unknown names stay as written."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name in node_vars:
            return node_vars[name]
        return env.get(name, match.group(0))

    return _INTERPOLATION.sub(sub, text)


def filter_host_env(
    host_env: Mapping[str, str], denylist: Iterable[str] = DEFAULT_ENV_DENYLIST
) -> dict[str, str]:
    denied = set(denylist)
    return {k: v for k, v in host_env.items() if k not in denied}


def nomad_variables(
    alloc: Mapping[str, Any],
    task: Mapping[str, Any],
    node: Mapping[str, Any],
    ports: Sequence[Mapping[str, Any]],
    alloc_root: str,
) -> dict[str, str]:
    """The ``NOMAD_*`` variables of one task (raw_exec: directories are host paths)."""
    job = alloc.get("Job") or {}
    alloc_id = str(alloc.get("ID", ""))
    name = str(alloc.get("Name", ""))
    task_name = str(task.get("Name", ""))
    index = _ALLOC_INDEX.search(name)
    attrs = node.get("Attributes") or {}
    env: dict[str, str] = {
        "NOMAD_ALLOC_ID": alloc_id,
        "NOMAD_SHORT_ALLOC_ID": alloc_id[:8],
        "NOMAD_ALLOC_NAME": name,
        "NOMAD_ALLOC_INDEX": index.group(1) if index else "0",
        "NOMAD_JOB_ID": str(job.get("ID", alloc.get("JobID", ""))),
        "NOMAD_JOB_NAME": str(job.get("Name", job.get("ID", ""))),
        "NOMAD_GROUP_NAME": str(alloc.get("TaskGroup", "")),
        "NOMAD_TASK_NAME": task_name,
        "NOMAD_DC": str(node.get("Datacenter", "")),
        "NOMAD_REGION": str(job.get("Region") or attrs.get("nomad.region") or "global"),
        "NOMAD_NAMESPACE": str(alloc.get("Namespace") or job.get("Namespace") or "default"),
        "NOMAD_ALLOC_DIR": f"{alloc_root}/alloc",
        "NOMAD_TASK_DIR": f"{alloc_root}/{task_name}/local",
        "NOMAD_SECRETS_DIR": f"{alloc_root}/{task_name}/secrets",
    }
    if job.get("ParentID"):
        env["NOMAD_JOB_PARENT_ID"] = str(job["ParentID"])
    resources = task.get("Resources") or {}
    env["NOMAD_CPU_LIMIT"] = str(int(resources.get("CPU") or 0))
    env["NOMAD_MEMORY_LIMIT"] = str(int(resources.get("MemoryMB") or 0))
    if resources.get("MemoryMaxMB"):
        env["NOMAD_MEMORY_MAX_LIMIT"] = str(int(resources["MemoryMaxMB"]))
    if resources.get("Cores"):
        # No core pinning here: report the first N cores, as a reservation would.
        cores = int(resources["Cores"])
        env["NOMAD_CPU_CORES"] = "0" if cores == 1 else f"0-{cores - 1}"
    for port in ports:
        label = str(port.get("Label", ""))
        ip = str(port.get("HostIP") or "127.0.0.1")
        value = int(port.get("Value") or 0)
        to = int(port.get("To") or 0)
        mapped = to if to > 0 else value
        env[f"NOMAD_IP_{label}"] = ip
        env[f"NOMAD_HOST_IP_{label}"] = ip
        env[f"NOMAD_PORT_{label}"] = str(mapped)
        env[f"NOMAD_ALLOC_PORT_{label}"] = str(mapped)
        env[f"NOMAD_HOST_PORT_{label}"] = str(value)
        env[f"NOMAD_ADDR_{label}"] = _join_host_port(ip, value)
        env[f"NOMAD_HOST_ADDR_{label}"] = _join_host_port(ip, value)
    for key, meta_value in merged_meta(alloc, task).items():
        env[f"NOMAD_META_{key}"] = meta_value
        env[f"NOMAD_META_{key.upper()}"] = meta_value
    return {(clean_env_var(k) if k.startswith(_CLEANED_PREFIXES) else k): v for k, v in env.items()}


def build_task_env(
    alloc: Mapping[str, Any],
    task: Mapping[str, Any],
    node: Mapping[str, Any],
    ports: Sequence[Mapping[str, Any]],
    alloc_root: str,
    host_env: Mapping[str, str] | None = None,
    denylist: Iterable[str] = DEFAULT_ENV_DENYLIST,
) -> dict[str, str]:
    """The complete environment: host env minus ``denylist``, ``NOMAD_*``, then the task's
    ``Env`` with ``${...}`` interpolated (task values win, as in Nomad)."""
    env = filter_host_env(host_env or {}, denylist)
    env.update(nomad_variables(alloc, task, node, ports, alloc_root))
    task_env = task.get("Env")
    if task_env:
        node_vars = node_variables(node)
        base = dict(env)
        for key, value in task_env.items():
            env[str(key)] = interpolate(str(value), base, node_vars)
    return env


def interpolate_args(
    args: Sequence[str], env: Mapping[str, str], node: Mapping[str, Any]
) -> list[str]:
    """Interpolate a task's ``command``/``args`` against its built environment."""
    texts = [str(a) for a in args]
    if not any("${" in text for text in texts):
        return texts  # nothing to replace: skip building the node's variables
    node_vars = node_variables(node)
    return [interpolate(text, env, node_vars) for text in texts]


def pick_dynamic_ports(
    count: int,
    host: str = "127.0.0.1",
    low: int = MIN_DYNAMIC_PORT,
    high: int = MAX_DYNAMIC_PORT,
    exclude: Iterable[int] = (),
    rng: random.Random | None = None,
) -> list[int]:
    """``count`` distinct ports in [low, high] that are free on ``host`` right now (bound and
    released; another process may still take one before the task binds it)."""
    chooser = rng or random.SystemRandom()
    taken = set(exclude)
    picked: list[int] = []
    for _ in range(_PORT_PROBE_ATTEMPTS * max(count, 1)):
        if len(picked) == count:
            break
        port = chooser.randint(low, high)
        if port in taken:
            continue
        taken.add(port)
        if _port_free(host, port):
            picked.append(port)
    if len(picked) < count:
        raise PortSelectionError(
            f"dynamic port selection failed: found {len(picked)} of {count} in {low}-{high}"
        )
    return picked


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
