"""Task-level defaults: resources, logs, artifacts, templates, networks, services, checks.

Mirrors the Canonicalize methods of api/tasks.go, api/resources.go and api/services.go;
`structs.job.canonicalize` calls these for every group and task.
"""

from __future__ import annotations

import copy
from typing import Any

from nomadpaas.agent.structs.duration import NS_PER_S

DEFAULT_KILL_TIMEOUT_NS = 5 * NS_PER_S
DEFAULT_CPU_MHZ = 100
DEFAULT_MEMORY_MB = 300
DEFAULT_LOG_MAX_FILES = 10
DEFAULT_LOG_MAX_FILE_SIZE_MB = 10
DEFAULT_TEMPLATE_SPLAY_NS = 5 * NS_PER_S


def merge_non_null(base: dict[str, Any] | None, over: dict[str, Any] | None) -> dict[str, Any]:
    """Nomad's pointer Merge: every non-null field of `over` wins over `base`."""
    out = dict(base or {})
    for key, value in (over or {}).items():
        if value is not None:
            out[key] = value
    return out


def fill_defaults(obj: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Set each missing or null key of `obj` to its default (copied)."""
    for key, value in defaults.items():
        if obj.get(key) is None:
            obj[key] = copy.deepcopy(value)
    return obj


def canonicalize_network(n: dict[str, Any]) -> dict[str, Any]:
    fill_defaults(
        n,
        {
            "Mode": "host",
            "Device": "",
            "CIDR": "",
            "IP": "",
            "Hostname": "",
            "MBits": 0,
            "DNS": None,
            "ReservedPorts": None,
            "DynamicPorts": None,
            "CNI": None,
        },
    )
    for key in ("ReservedPorts", "DynamicPorts"):
        if n[key]:
            n[key] = [
                fill_defaults(dict(p), {"Label": "", "Value": 0, "To": 0, "HostNetwork": "default"})
                for p in n[key]
            ]
    return n


def canonicalize_service(
    s: dict[str, Any], task: dict[str, Any] | None, group: dict[str, Any], job: dict[str, Any]
) -> dict[str, Any]:
    name = f"{job['Name']}-{group['Name']}" + (f"-{task['Name']}" if task is not None else "")
    fill_defaults(
        s,
        {
            "Name": name,
            "TaskName": "",
            "PortLabel": "",
            "Tags": None,
            "CanaryTags": None,
            "EnableTagOverride": False,
            "Meta": None,
            "CanaryMeta": None,
            "TaggedAddresses": None,
            "AddressMode": "auto",
            "Address": "",
            "Provider": "consul",
            "OnUpdate": "require_healthy",
            "Cluster": "default",
            "Connect": None,
            "Identity": None,
            "Weights": None,
            "Kind": "",
            "Checks": None,
        },
    )
    if s["Checks"]:
        s["Checks"] = [_canonicalize_check(dict(c), s) for c in s["Checks"]]
    return s


def _canonicalize_check(c: dict[str, Any], service: dict[str, Any]) -> dict[str, Any]:
    fill_defaults(
        c,
        {
            "Name": f'service: "{service["Name"]}" check',
            "Type": "",
            "Command": "",
            "Args": None,
            "Path": "",
            "Protocol": "",
            "PortLabel": "",
            "Expose": False,
            "AddressMode": "",
            "Interval": 0,
            "Timeout": 0,
            "InitialStatus": "",
            "Notes": "",
            "TLSServerName": "",
            "TLSSkipVerify": False,
            "Header": None,
            "Method": "",
            "Body": "",
            "CheckRestart": None,
            "GRPCService": "",
            "GRPCUseTLS": False,
            "TaskName": "",
            "SuccessBeforePassing": 0,
            "FailuresBeforeCritical": 0,
            "FailuresBeforeWarning": 0,
            "OnUpdate": service["OnUpdate"],
        },
    )
    if c["Type"] == "http" and not c["Method"]:
        c["Method"] = "GET"
    return c


def canonicalize_task(
    t: dict[str, Any], group: dict[str, Any], job: dict[str, Any]
) -> dict[str, Any]:
    fill_defaults(
        t,
        {
            "Name": "",
            "Driver": "",
            "User": "",
            "Lifecycle": None,
            "Config": None,
            "Constraints": None,
            "Affinities": None,
            "Env": None,
            "Services": None,
            "Meta": None,
            "KillTimeout": DEFAULT_KILL_TIMEOUT_NS,
            "Artifacts": None,
            "Vault": None,
            "Consul": None,
            "Templates": None,
            "DispatchPayload": None,
            "VolumeMounts": None,
            "Leader": False,
            "ShutdownDelay": 0,
            "KillSignal": "",
            "Kind": "",
            "ScalingPolicies": None,
            "Identity": None,
            "Identities": None,
            "Actions": None,
            "Schedule": None,
            "CSIPluginConfig": None,
        },
    )
    res = fill_defaults(
        dict(t.get("Resources") or {}),
        {
            "MemoryMB": DEFAULT_MEMORY_MB,
            "MemoryMaxMB": 0,
            "DiskMB": 0,
            "Networks": None,
            "Devices": None,
        },
    )
    if res.get("CPU") is None:
        # Reserving whole cores replaces the MHz share, so CPU drops to 0.
        res["CPU"] = 0 if res.get("Cores") else DEFAULT_CPU_MHZ
    fill_defaults(res, {"Cores": 0, "IOPS": 0, "NUMA": None, "SecretsMB": 0})
    t["Resources"] = res
    t["LogConfig"] = fill_defaults(
        dict(t.get("LogConfig") or {}),
        {
            "MaxFiles": DEFAULT_LOG_MAX_FILES,
            "MaxFileSizeMB": DEFAULT_LOG_MAX_FILE_SIZE_MB,
            "Disabled": False,
        },
    )
    if t["Artifacts"]:
        t["Artifacts"] = [_canonicalize_artifact(dict(a)) for a in t["Artifacts"]]
    if t["Templates"]:
        t["Templates"] = [_canonicalize_template(dict(tm)) for tm in t["Templates"]]
    if t["Lifecycle"] is not None and not t["Lifecycle"].get("Hook"):
        t["Lifecycle"] = None  # an empty lifecycle block means "main task" (Lifecycle.Empty)
    elif t["Lifecycle"] is not None:
        t["Lifecycle"] = fill_defaults(dict(t["Lifecycle"]), {"Sidecar": False})
    t["RestartPolicy"] = merge_non_null(group["RestartPolicy"], t.get("RestartPolicy"))
    if t["Services"]:
        t["Services"] = [canonicalize_service(dict(s), t, group, job) for s in t["Services"]]
    return t


def _canonicalize_artifact(a: dict[str, Any]) -> dict[str, Any]:
    fill_defaults(
        a,
        {
            "GetterSource": "",
            "GetterOptions": None,
            "GetterHeaders": None,
            "GetterMode": "any",
            "GetterInsecure": False,
            "Chown": False,
        },
    )
    if a.get("RelativeDest") is None:
        if a["GetterMode"] == "file":
            base = str(a["GetterSource"]).split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
            a["RelativeDest"] = f"local/{base}"
        else:
            a["RelativeDest"] = "local/"
    return a


def _canonicalize_template(tm: dict[str, Any]) -> dict[str, Any]:
    fill_defaults(
        tm,
        {
            "SourcePath": "",
            "DestPath": "",
            "EmbeddedTmpl": "",
            "ChangeMode": "restart",
            "ChangeScript": None,
            "Once": False,
            "Splay": DEFAULT_TEMPLATE_SPLAY_NS,
            "Perms": "0644",
            "Uid": None,
            "Gid": None,
            "LeftDelim": "{{",
            "RightDelim": "}}",
            "Envvars": False,
            "VaultGrace": 0,
            "Wait": None,
            "ErrMissingKey": False,
        },
    )
    if tm.get("ChangeSignal") is None:
        tm["ChangeSignal"] = "SIGHUP" if tm["ChangeMode"] == "signal" else ""
    else:
        tm["ChangeSignal"] = str(tm["ChangeSignal"]).upper()
    return tm
