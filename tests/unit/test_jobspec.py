"""The build job template: rendering, schema validation (table-driven refusals), and the
real agent accepting what we render."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import nomad
import pytest
from testsupport import ServerProcess

from nomadpaas import jobspec
from nomadpaas.build import ensure_build_job
from nomadpaas.errors import InvalidInput
from nomadpaas.nomad.client import NomadClient
from nomadpaas.nomad.jobs import Jobs
from nomadpaas.slugbuilder.payload import PAYLOAD_FILE

REPO = Path(__file__).resolve().parents[2]


def test_render_fills_interpreter_and_buildpacks_and_validates() -> None:
    job = jobspec.render_build_job()
    task = job["TaskGroups"][0]["Tasks"][0]
    assert task["Driver"] == "raw_exec"
    assert task["Config"] == {
        "command": sys.executable,
        "args": ["-I", "-m", "nomadpaas.slugbuilder", "task"],
    }
    buildpacks = Path(task["Env"]["NOMADPAAS_BUILDPACKS_DIR"])
    assert (buildpacks / "python" / "bin" / "detect").is_file()
    assert job["Meta"] == {jobspec.ROLE_META_KEY: jobspec.BUILD_ROLE}
    params = job["ParameterizedJob"]
    assert params["Payload"] == "optional"
    assert task["DispatchPayload"] == {"File": PAYLOAD_FILE}
    assert tuple(params["MetaRequired"]) == jobspec.BUILD_META_REQUIRED
    assert tuple(params["MetaOptional"]) == jobspec.BUILD_META_OPTIONAL
    group = job["TaskGroups"][0]
    assert group["RestartPolicy"]["Attempts"] == 0 and group["RestartPolicy"]["Mode"] == "fail"
    assert group["ReschedulePolicy"]["Attempts"] == 0
    assert group["ReschedulePolicy"]["Unlimited"] is False
    assert group["MaxRunDuration"] == 20 * 60 * 10**9
    assert task["Resources"] == {"CPU": 1000, "MemoryMB": 2048}


def test_rendering_returns_a_fresh_copy() -> None:
    first = jobspec.render_build_job(python="/a/python")
    first["Meta"]["x"] = "y"
    assert "x" not in jobspec.render_build_job()["Meta"]


def test_top_level_jobs_dir_is_the_package_data() -> None:
    top = REPO / "jobs" / "build.nomad.json"
    assert top.resolve() == (REPO / "nomadpaas" / "jobs" / "build.nomad.json").resolve()
    document = json.loads(top.read_text())
    jobspec.validate_job(document["Job"], "build")  # registerable as is


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(job: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = job
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return mutate


REFUSED = [
    ("TaskGroups.0.Tasks.0.Env.AWS_SECRET_ACCESS_KEY", "x", "TaskGroups/0/Tasks/0/Env"),
    ("TaskGroups.0.Tasks.0.Env.NOMAD_TOKEN", "x", "TaskGroups/0/Tasks/0/Env"),
    ("TaskGroups.0.Tasks.0.Env.github_token", "x", "TaskGroups/0/Tasks/0/Env"),
    ("ParameterizedJob.Payload", "required", "ParameterizedJob/Payload"),
    ("TaskGroups.0.Tasks.0.DispatchPayload.File", "x.tgz", "TaskGroups/0/Tasks/0/DispatchPayload"),
    ("ParameterizedJob.MetaRequired", ["app"], "ParameterizedJob/MetaRequired"),
    ("TaskGroups.0.RestartPolicy.Attempts", 2, "TaskGroups/0/RestartPolicy/Attempts"),
    ("TaskGroups.0.ReschedulePolicy.Unlimited", True, "TaskGroups/0/ReschedulePolicy"),
    ("TaskGroups.0.MaxRunDuration", "20m", "TaskGroups/0/MaxRunDuration"),
    ("Meta", {}, "Meta"),
    ("Type", "service", "Type"),
    ("TaskGroups.0.Tasks.0.Config.password", "x", "TaskGroups/0/Tasks/0/Config"),
]


@pytest.mark.parametrize(("path", "value", "where"), REFUSED)
def test_schema_refuses(path: str, value: Any, where: str) -> None:
    job = copy.deepcopy(jobspec.render_build_job())
    _set(path, value)(job)
    with pytest.raises(InvalidInput) as info:
        jobspec.validate_job(job, "build")
    assert where in info.value.message


def _jobs_api_or_skip(server: ServerProcess) -> None:
    # Skip only when the agent has no jobs API at all; any other answer is tested.
    response = httpx.get(f"{server.url}/v1/jobs", timeout=30)
    if response.status_code == 404:
        pytest.skip("the embedded agent has no jobs API yet (/v1/jobs answered 404)")


def test_real_agent_accepts_and_keeps_the_rendered_job(agent: ServerProcess) -> None:
    _jobs_api_or_skip(agent)
    job = jobspec.render_build_job()
    verdict = httpx.put(f"{agent.url}/v1/validate/job", json={"Job": job}, timeout=30)
    assert verdict.status_code == 200, verdict.text
    assert not verdict.json().get("ValidationErrors"), verdict.text

    with NomadClient(agent.url) as client:
        jobs = Jobs(client)
        assert ensure_build_job(jobs, job) is True
        # The server's canonicalised copy (defaults added) still counts as current.
        assert ensure_build_job(jobs, job) is False
        version = (jobs.get(jobspec.BUILD_JOB_ID) or {}).get("Version")
        assert ensure_build_job(jobs, jobspec.render_build_job(python="/other/python3")) is True
        assert (jobs.get(jobspec.BUILD_JOB_ID) or {}).get("Version") == (version or 0) + 1

    # A third-party client sees a parameterized batch job marked as ours.
    stored = nomad.Nomad(host="127.0.0.1", port=agent.port, timeout=30).job.get_job(
        jobspec.BUILD_JOB_ID
    )
    assert stored["Type"] == "batch" and stored["ParameterizedJob"]["Payload"] == "optional"
    assert stored["Meta"][jobspec.ROLE_META_KEY] == jobspec.BUILD_ROLE


def test_an_unvalidated_render_is_checked_only_before_it_is_registered() -> None:
    from unit.fakebuild import FakeBuildNomad

    secret = {"AWS_SECRET_ACCESS_KEY": "x"}
    with pytest.raises(InvalidInput):
        jobspec.render_build_job(env=secret)
    bad = jobspec.render_build_job(env=secret, validate=False)  # the caller checks later
    fake = FakeBuildNomad()
    with fake.client() as client:
        jobs = Jobs(client)
        with pytest.raises(InvalidInput) as info:
            ensure_build_job(jobs, bad)
        assert "TaskGroups/0/Tasks/0/Env" in info.value.message
        assert fake.registrations == []  # refused before anything was sent
        good = jobspec.render_build_job(validate=False)
        assert ensure_build_job(jobs, good) is True
        assert fake.registrations == [good]


def test_importing_the_build_path_leaves_jsonschema_unimported() -> None:
    # A push whose build job is registered as rendered validates nothing: it must not
    # pay jsonschema's import (tens of milliseconds per CLI command).
    code = "import sys, nomadpaas.build, nomadpaas.push; print('jsonschema' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
