"""Job defaults, validation texts, destructive-change detection and dispatch children."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from nomadpaas.agent.structs.duration import NS_PER_HOUR, NS_PER_MIN, NS_PER_S
from nomadpaas.agent.structs.job import (
    canonicalize,
    dispatched_job,
    job_spec_changed,
    server_fields,
    tasks_updated,
)
from nomadpaas.agent.structs.job_validate import (
    multierror_text,
    validate,
    validate_dispatch,
    validate_scale,
)


def raw_job(**over: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "ID": "web",
        "TaskGroups": [
            {
                "Name": "app",
                "Tasks": [
                    {"Name": "srv", "Driver": "raw_exec", "Config": {"command": "/bin/true"}}
                ],
            }
        ],
    }
    job.update(over)
    return job


def group(job: dict[str, Any], idx: int = 0) -> dict[str, Any]:
    g: dict[str, Any] = job["TaskGroups"][idx]
    return g


def task(job: dict[str, Any]) -> dict[str, Any]:
    t: dict[str, Any] = group(job)["Tasks"][0]
    return t


# --- canonicalize -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("Name",), "web"),
        (("Type",), "service"),
        (("Namespace",), "default"),
        (("Region",), "global"),
        (("Datacenters",), ["*"]),
        (("NodePool",), "default"),
        (("Priority",), 50),
        (("Stop",), False),
        (("Meta",), None),
        (("Update", "MaxParallel"), 1),
        (("Update", "HealthCheck"), "checks"),
        (("Update", "MinHealthyTime"), 10 * NS_PER_S),
        (("Update", "HealthyDeadline"), 5 * NS_PER_MIN),
        (("Update", "ProgressDeadline"), 10 * NS_PER_MIN),
        (("Update", "Stagger"), 30 * NS_PER_S),
        (("TaskGroups", 0, "Count"), 1),
        (("TaskGroups", 0, "EphemeralDisk"), {"Sticky": False, "Migrate": False, "SizeMB": 300}),
        (("TaskGroups", 0, "Update", "Canary"), 0),
        (("TaskGroups", 0, "Migrate", "MaxParallel"), 1),
        (("TaskGroups", 0, "RestartPolicy", "Attempts"), 2),
        (("TaskGroups", 0, "RestartPolicy", "Interval"), 30 * NS_PER_MIN),
        (("TaskGroups", 0, "RestartPolicy", "Delay"), 15 * NS_PER_S),
        (("TaskGroups", 0, "RestartPolicy", "Mode"), "fail"),
        (("TaskGroups", 0, "ReschedulePolicy", "Unlimited"), True),
        (("TaskGroups", 0, "ReschedulePolicy", "DelayFunction"), "exponential"),
        (("TaskGroups", 0, "ReschedulePolicy", "MaxDelay"), NS_PER_HOUR),
        (("TaskGroups", 0, "Networks"), None),
        (("TaskGroups", 0, "Tasks", 0, "Resources", "CPU"), 100),
        (("TaskGroups", 0, "Tasks", 0, "Resources", "MemoryMB"), 300),
        (("TaskGroups", 0, "Tasks", 0, "KillTimeout"), 5 * NS_PER_S),
        (("TaskGroups", 0, "Tasks", 0, "KillSignal"), ""),
        (
            ("TaskGroups", 0, "Tasks", 0, "LogConfig"),
            {"MaxFiles": 10, "MaxFileSizeMB": 10, "Disabled": False},
        ),
        (("TaskGroups", 0, "Tasks", 0, "Env"), None),
        (("TaskGroups", 0, "Tasks", 0, "Lifecycle"), None),
        (("TaskGroups", 0, "Tasks", 0, "RestartPolicy", "Attempts"), 2),
    ],
)
def test_canonicalize_service_defaults(path: tuple[Any, ...], expected: Any) -> None:
    value: Any = canonicalize(raw_job())
    for key in path:
        value = value[key]
    assert value == expected


def test_canonicalize_batch_has_no_update_and_batch_policies() -> None:
    job = canonicalize(raw_job(Type="batch"))
    g = group(job)
    assert job["Update"] is None and g["Update"] is None
    assert g["Migrate"] is None
    assert g["RestartPolicy"] == {
        "Attempts": 3,
        "Interval": 24 * NS_PER_HOUR,
        "Delay": 15 * NS_PER_S,
        "Mode": "fail",
        "RenderTemplates": False,
    }
    assert g["ReschedulePolicy"] == {
        "Attempts": 1,
        "Interval": 24 * NS_PER_HOUR,
        "Delay": 5 * NS_PER_S,
        "DelayFunction": "constant",
        "MaxDelay": 0,
        "Unlimited": False,
    }


def test_canonicalize_merges_user_blocks_over_defaults() -> None:
    raw = raw_job(Update={"Canary": 1, "AutoPromote": True})
    group(raw)["Update"] = {"MaxParallel": 3}
    group(raw)["RestartPolicy"] = {"Attempts": 0}
    task(raw)["RestartPolicy"] = {"Delay": 1 * NS_PER_S}
    g = group(canonicalize(raw))
    assert g["Update"]["Canary"] == 1 and g["Update"]["MaxParallel"] == 3
    assert g["Update"]["AutoPromote"] is True and g["Update"]["MinHealthyTime"] == 10 * NS_PER_S
    assert g["RestartPolicy"]["Attempts"] == 0 and g["RestartPolicy"]["Delay"] == 15 * NS_PER_S
    assert g["Tasks"][0]["RestartPolicy"]["Attempts"] == 0
    assert g["Tasks"][0]["RestartPolicy"]["Delay"] == 1 * NS_PER_S


def test_canonicalize_count_from_scaling_min_and_zero_is_kept() -> None:
    raw = raw_job()
    group(raw)["Scaling"] = {"Min": 2, "Max": 5}
    assert group(canonicalize(raw))["Count"] == 2
    group(raw)["Count"] = 0
    assert group(canonicalize(raw))["Count"] == 0


def test_canonicalize_services_checks_artifacts_templates() -> None:
    raw = raw_job()
    group(raw)["Services"] = [{"PortLabel": "http", "Checks": [{"Type": "http", "Path": "/"}]}]
    task(raw)["Services"] = [{"Provider": "nomad"}]
    task(raw)["Artifacts"] = [
        {"GetterSource": "https://x/app.tgz"},
        {"GetterSource": "https://x/bin/tool?x=1", "GetterMode": "file"},
    ]
    task(raw)["Templates"] = [
        {"EmbeddedTmpl": "x", "ChangeMode": "signal"},
        {"ChangeSignal": "sigusr1"},
    ]
    job = canonicalize(raw)
    svc = group(job)["Services"][0]
    assert (svc["Name"], svc["Provider"], svc["AddressMode"], svc["OnUpdate"]) == (
        "web-app",
        "consul",
        "auto",
        "require_healthy",
    )
    assert svc["Checks"][0]["Method"] == "GET"
    assert task(job)["Services"][0]["Name"] == "web-app-srv"
    arts = task(job)["Artifacts"]
    assert (arts[0]["GetterMode"], arts[0]["RelativeDest"]) == ("any", "local/")
    assert arts[1]["RelativeDest"] == "local/tool"
    tmpls = task(job)["Templates"]
    assert (tmpls[0]["ChangeSignal"], tmpls[0]["Splay"], tmpls[0]["Perms"]) == (
        "SIGHUP",
        5 * NS_PER_S,
        "0644",
    )
    assert (tmpls[1]["ChangeMode"], tmpls[1]["ChangeSignal"]) == ("restart", "SIGUSR1")


def test_canonicalize_does_not_mutate_input_and_is_idempotent() -> None:
    raw = raw_job()
    before = copy.deepcopy(raw)
    once = canonicalize(raw)
    assert raw == before
    assert canonicalize(once) == once


def test_cores_without_cpu_sets_cpu_zero() -> None:
    raw = raw_job()
    task(raw)["Resources"] = {"Cores": 2}
    assert task(canonicalize(raw))["Resources"]["CPU"] == 0


# --- validate -------------------------------------------------------------------------


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def edit(job: dict[str, Any]) -> None:
        target: Any = job
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


VALIDATION_CASES: list[tuple[str, Any, str]] = [
    ("space in id", _set(("ID",), "my web"), "Job ID contains a space"),
    ("bad type", _set(("Type",), "cron"), 'Invalid job type: "cron"'),
    ("priority", _set(("Priority",), 101), "job priority must be between [1, 100]"),
    ("no groups", _set(("TaskGroups",), []), "Missing job task groups"),
    (
        "negative count",
        _set(("TaskGroups", 0, "Count"), -1),
        "Task group app validation failed: 1 error occurred:\n\t* "
        "Task group count can't be negative\n\n",
    ),
    (
        "missing driver",
        _set(("TaskGroups", 0, "Tasks", 0, "Driver"), ""),
        "Task group app validation failed: 1 error occurred:\n\t* Task srv validation failed: "
        "1 error occurred:\n\t* Missing task driver\n\n\n\n",
    ),
    (
        "parameterized service",
        _set(("ParameterizedJob",), {"Payload": "optional"}),
        'Parameterized job can only be used with "batch" or "sysbatch" scheduler',
    ),
    (
        "canary negative",
        _set(("TaskGroups", 0, "Update", "Canary"), -1),
        "Task group app validation failed: 1 error occurred:\n\t* "
        "Canary count can not be less than zero: -1 < 0\n\n",
    ),
    (
        "min healthy >= deadline",
        _set(("TaskGroups", 0, "Update", "MinHealthyTime"), 5 * NS_PER_MIN),
        "Task group app validation failed: 1 error occurred:\n\t* "
        "Minimum healthy time must be less than healthy deadline: 5m0s > 5m0s\n\n",
    ),
]


@pytest.mark.parametrize(
    ("edit", "expected"), [c[1:] for c in VALIDATION_CASES], ids=[c[0] for c in VALIDATION_CASES]
)
def test_validate_reports_nomads_text(edit: Any, expected: str) -> None:
    job = canonicalize(raw_job())
    edit(job)
    assert expected in validate(job)


def test_valid_job_has_no_errors() -> None:
    assert validate(canonicalize(raw_job())) == []
    assert validate(canonicalize(raw_job(Type="batch"))) == []


def test_unknown_driver_is_not_a_validation_error() -> None:
    raw = raw_job()
    task(raw)["Driver"] = "docker"
    assert validate(canonicalize(raw)) == []


def test_duplicate_groups_and_batch_update_block() -> None:
    raw = raw_job(Type="batch")
    raw["TaskGroups"].append(copy.deepcopy(group(raw)))
    group(raw, 1)["Update"] = {"MaxParallel": 1}
    errs = validate(canonicalize(raw))
    assert "Job task group 2 redefines 'app' from group 1" in errs
    assert any('Job type "batch" does not allow update block' in e for e in errs)


def test_parameterized_meta_overlap() -> None:
    raw = raw_job(
        Type="batch", ParameterizedJob={"MetaRequired": ["a", "b"], "MetaOptional": ["b"]}
    )
    assert validate(canonicalize(raw)) == [
        "Required and optional meta keys should be disjoint. Following keys exist in both: [b]"
    ]


@pytest.mark.parametrize(
    ("errors", "text"),
    [
        (["x"], "1 error occurred:\n\t* x\n\n"),
        (["x", "y"], "2 errors occurred:\n\t* x\n\t* y\n\n"),
    ],
)
def test_multierror_text(errors: list[str], text: str) -> None:
    assert multierror_text(errors) == text


# --- tasks_updated / job_spec_changed ------------------------------------------------


def _task_edit(key: str, value: Any) -> Any:
    def edit(job: dict[str, Any]) -> None:
        task(job)[key] = value

    return edit


def _resource_edit(key: str, value: Any) -> Any:
    def edit(job: dict[str, Any]) -> None:
        task(job)["Resources"][key] = value

    return edit


def _group_edit(key: str, value: Any) -> Any:
    def edit(job: dict[str, Any]) -> None:
        group(job)[key] = value

    return edit


def _log_edit(key: str, value: Any) -> Any:
    def edit(job: dict[str, Any]) -> None:
        task(job)["LogConfig"][key] = value

    return edit


UPDATE_CASES: list[tuple[str, Any, bool]] = [
    ("config", _task_edit("Config", {"command": "/bin/false"}), True),
    ("env", _task_edit("Env", {"A": "1"}), True),
    ("driver", _task_edit("Driver", "exec"), True),
    ("user", _task_edit("User", "nobody"), True),
    ("artifacts", _task_edit("Artifacts", [{"GetterSource": "x"}]), True),
    ("task meta", _task_edit("Meta", {"k": "v"}), True),
    ("job meta", lambda j: j.__setitem__("Meta", {"k": "v"}), True),
    ("cpu", _resource_edit("CPU", 200), True),
    ("memory", _resource_edit("MemoryMB", 512), True),
    ("log disabled", _log_edit("Disabled", True), True),
    (
        "networks",
        _group_edit("Networks", [{"Mode": "host", "DynamicPorts": [{"Label": "http"}]}]),
        True,
    ),
    ("ephemeral disk", _group_edit("EphemeralDisk", {"SizeMB": 500}), True),
    ("count", _group_edit("Count", 5), False),
    ("update block", _group_edit("Update", {"MaxParallel": 3}), False),
    ("kill timeout", _task_edit("KillTimeout", 10 * NS_PER_S), False),
    ("log sizes", _log_edit("MaxFiles", 3), False),
    ("services", _group_edit("Services", [{"Name": "x", "Tags": ["a"]}]), False),
]


@pytest.mark.parametrize(
    ("edit", "destructive"), [c[1:] for c in UPDATE_CASES], ids=[c[0] for c in UPDATE_CASES]
)
def test_tasks_updated(edit: Any, destructive: bool) -> None:
    old = canonicalize(raw_job())
    new = copy.deepcopy(old)
    edit(new)
    assert tasks_updated(new, old, "app") is destructive
    assert job_spec_changed(old, new)


def test_tasks_updated_counts_tasks() -> None:
    old = canonicalize(raw_job())
    new = copy.deepcopy(old)
    group(new)["Tasks"].append({**task(new), "Name": "other"})
    assert tasks_updated(new, old, "app")


def test_job_spec_changed_ignores_server_fields_but_not_stop() -> None:
    old = server_fields(canonicalize(raw_job()), now_ns=1, index=10, version=0)
    same = server_fields(canonicalize(raw_job()), now_ns=2, index=20, version=3)
    assert not job_spec_changed(old, same)
    assert job_spec_changed(old, {**same, "Stop": True})


def test_server_fields_keeps_create_index() -> None:
    first = server_fields(canonicalize(raw_job()), now_ns=5, index=10, version=0)
    second = server_fields(first, now_ns=6, index=12, version=1)
    assert (second["CreateIndex"], second["ModifyIndex"], second["JobModifyIndex"]) == (10, 12, 12)
    assert (second["Version"], second["SubmitTime"], second["Status"], second["Stable"]) == (
        1,
        6,
        "pending",
        False,
    )


# --- dispatch ---------------------------------------------------------------------------


def parent(
    payload: str = "optional", required: list[str] | None = None, optional: list[str] | None = None
) -> Any:
    raw = raw_job(
        ID="build",
        Type="batch",
        Meta={"base": "1"},
        ParameterizedJob={"Payload": payload, "MetaRequired": required, "MetaOptional": optional},
    )
    return canonicalize(raw)


DISPATCH_CASES: list[tuple[str, Any, bytes | None, dict[str, str] | None, int, list[str]]] = [
    ("ok", parent(optional=["x"]), b"hi", {"x": "1"}, 50, []),
    (
        "required payload",
        parent("required"),
        None,
        None,
        50,
        ["Payload is not provided but required by parameterized job"],
    ),
    (
        "forbidden payload",
        parent("forbidden"),
        b"x",
        None,
        50,
        ["Payload provided but forbidden by parameterized job"],
    ),
    ("too big", parent(), b"x" * 16385, None, 50, ["Payload exceeds maximum size; 16385 > 16384"]),
    (
        "unpermitted",
        parent(optional=["a"]),
        None,
        {"z": "1", "y": "2"},
        50,
        ["Dispatch request included unpermitted metadata keys: [y z]"],
    ),
    (
        "missing",
        parent(required=["r"]),
        None,
        {},
        50,
        ["Dispatch did not provide required meta keys: [r]"],
    ),
    ("priority", parent(), None, None, 0, ["dispatch job priority must be between [1, 100]"]),
]


@pytest.mark.parametrize(
    ("job", "payload", "meta", "priority", "expected"),
    [c[1:] for c in DISPATCH_CASES],
    ids=[c[0] for c in DISPATCH_CASES],
)
def test_validate_dispatch(
    job: Any, payload: bytes | None, meta: dict[str, str] | None, priority: int, expected: list[str]
) -> None:
    assert validate_dispatch(job, payload, meta, priority) == expected


@pytest.mark.parametrize(
    ("template", "expected_id"),
    [
        ("", "build/dispatch-1700000000-0a1b2c3d"),
        ("nightly", "build/dispatch-nightly-1700000000-0a1b2c3d"),
    ],
)
def test_dispatched_job(template: str, expected_id: str) -> None:
    child = dispatched_job(
        parent(optional=["x"]),
        b"data",
        {"x": "1"},
        now_ns=1_700_000_000 * NS_PER_S + 5,
        suffix_hex="0a1b2c3d",
        id_prefix_template=template,
    )
    assert child["ID"] == expected_id and child["Name"] == expected_id
    assert (child["ParentID"], child["Dispatched"]) == ("build", True)
    assert child["Meta"] == {"base": "1", "x": "1"}
    assert base64.b64decode(child["Payload"]) == b"data"
    assert child["Priority"] == 50


def test_job_spec_changed_treats_missing_server_fields_as_zero() -> None:
    stored = server_fields(canonicalize(raw_job()), now_ns=1, index=10, version=0)
    request = canonicalize(raw_job())
    assert not job_spec_changed(stored, request)
    assert job_spec_changed(stored, {**request, "ParentID": "other"})


@pytest.mark.parametrize(
    ("group_name", "count", "error", "active", "expected"),
    [
        ("app", 3, False, False, None),
        ("app", None, True, True, None),
        ("", 1, False, False, (400, "missing task group name for scaling action")),
        ("app", -1, False, False, (400, "scaling action count can't be negative")),
        ("app", 1, True, False, (400, "scaling action should not contain count if error is true")),
        (
            "db",
            1,
            False,
            False,
            (400, 'task group "db" specified for scaling does not exist in job'),
        ),
        ("app", 1, False, True, (400, "job scaling blocked due to active deployment")),
    ],
)
def test_validate_scale(
    group_name: str, count: int | None, error: bool, active: bool, expected: tuple[int, str] | None
) -> None:
    job = canonicalize(raw_job())
    assert validate_scale(job, group_name, count, error=error, active_deployment=active) == expected


def test_validate_scale_policy_bounds_and_system() -> None:
    raw = raw_job()
    group(raw)["Scaling"] = {"Min": 1, "Max": 3}
    job = canonicalize(raw)
    assert validate_scale(job, "app", 0, error=False, active_deployment=False) == (
        400,
        "group count was less than scaling policy minimum: 0 < 1",
    )
    assert validate_scale(job, "app", 4, error=False, active_deployment=False) == (
        400,
        "group count was greater than scaling policy maximum: 4 > 3",
    )
    system = canonicalize(raw_job(Type="system"))
    assert validate_scale(system, "app", 2, error=False, active_deployment=False) == (
        400,
        'jobs of type "system" can only be scaled between 0 and 1',
    )
