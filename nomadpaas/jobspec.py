"""Job templates: load `jobs/*.nomad.json`, fill in this installation's values, validate.

The only module that knows the templates' shapes (DESIGN.md §5). Templates are Nomad API
JSON (`{"Job": {...}}`, what `POST /v1/jobs` takes), stored as package data in
`nomadpaas/jobs/` (the top-level `jobs/` is a symlink to it), each with a JSON Schema in
`jobs/schema/` that every rendered job must pass before it is sent to Nomad.

Usage::

    job = render_build_job()        # the `nomadpaas-build` Job object, validated
    nomad.put("/v1/jobs", {"Job": job})
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from nomadpaas.errors import InvalidInput

__all__ = [
    "BUILD_JOB_ID",
    "BUILD_META_OPTIONAL",
    "BUILD_META_REQUIRED",
    "BUILD_ROLE",
    "BUILD_TASK",
    "DISPATCH_PAYLOAD_MAX_BYTES",
    "ROLE_META_KEY",
    "SOURCE_SHA256_META",
    "dispatch_payload_file",
    "load_template",
    "render_build_job",
    "validate_job",
]

#: The parameterized batch job every build is dispatched from.
BUILD_JOB_ID = "nomadpaas-build"
#: Its group and task name (the log stream is `?task=build`).
BUILD_TASK = "build"
#: Job meta key that marks a job as the platform's own. App jobs carry `nomadpaas.app`;
#: the build job belongs to no app, so it carries `nomadpaas.role = build` instead, and
#: the platform refuses to overwrite a `nomadpaas-build` job without that mark.
ROLE_META_KEY = "nomadpaas.role"
BUILD_ROLE = "build"
#: Dispatch meta the build task needs (presigned URLs, never credentials).
BUILD_META_REQUIRED = ("app", "build_id", "source_url", "slug_url", "metadata_url")
#: `result_token`: a random token per build; the task prints it on its result line (see
#: slugbuilder/dispatched.py RESULT_PREFIX) so the platform can trust that line.
#: `source_sha256`: the source tarball's digest, sent with a dispatch Payload (the
#: source itself, when small): the task builds from the payload only if it matches.
SOURCE_SHA256_META = "source_sha256"
BUILD_META_OPTIONAL = (
    "cache_url", "cache_put_url", "config_url", "stack", "commit", "result_token",
    "source_sha256",
)  # fmt: skip
#: Nomad's dispatch payload limit (nomad/structs DispatchPayloadSizeLimit, 16 KiB): a
#: dispatch whose Payload is longer (before compression) is refused with `Payload exceeds
#: maximum size; N > 16384`; one of exactly this many bytes is accepted.
DISPATCH_PAYLOAD_MAX_BYTES = 16 * 1024


def _jobs_dir() -> Path:
    return Path(str(resources.files("nomadpaas") / "jobs"))


@cache
def _read_json(relpath: str) -> Any:
    path = _jobs_dir() / relpath
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"The job template file {path} is missing or not JSON: {exc}",
            hint="Reinstall nomadpaas: its package data is incomplete.",
        ) from exc


def load_template(name: str) -> dict[str, Any]:
    """A deep copy of the Job object in `jobs/<name>.nomad.json` (e.g. `build`)."""
    document = _read_json(f"{name}.nomad.json")
    return copy.deepcopy(document["Job"])


def dispatch_payload_file(job: Mapping[str, Any]) -> str | None:
    """The file a dispatch Payload is written to in the build task's `local/` dir (its
    `DispatchPayload.File`), or None when `job` takes no payload (it forbids one, its
    task has no `DispatchPayload`, or its meta does not allow `source_sha256`, which the
    task checks the payload against): then the source travels through S3 only."""
    params = job.get("ParameterizedJob") or {}
    allowed = (*(params.get("MetaRequired") or ()), *(params.get("MetaOptional") or ()))
    if params.get("Payload") == "forbidden" or SOURCE_SHA256_META not in allowed:
        return None
    for group in job.get("TaskGroups") or ():
        for task in group.get("Tasks") or ():
            if task.get("Name") == BUILD_TASK:
                file = (task.get("DispatchPayload") or {}).get("File")
                return str(file) if file else None
    return None


def validate_job(job: Mapping[str, Any], schema: str) -> None:
    """Check a rendered Job against `jobs/schema/<schema>.schema.json`.

    Raises InvalidInput naming the JSON path of the first problem (e.g.
    `TaskGroups/0/Tasks/0/Env`), so a bad render never reaches Nomad.
    """
    # Imported here: jsonschema costs tens of milliseconds to import, and a push whose
    # build job is already registered as rendered sends no job, so validates none.
    import jsonschema

    document = _read_json(f"schema/{schema}.schema.json")
    validator = jsonschema.Draft202012Validator(document)
    errors = sorted(validator.iter_errors(job), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(part) for part in first.absolute_path) or "(the job)"
        raise InvalidInput(
            f"The rendered {schema} job is invalid at {where}: {first.message}",
            hint="This is a nomadpaas bug or a bad override; the job was not sent to Nomad.",
        )


def render_build_job(
    *,
    python: str | None = None,
    buildpacks_dir: str | Path | None = None,
    datacenters: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    validate: bool = True,
) -> dict[str, Any]:
    """The `nomadpaas-build` parameterized batch job, filled in and validated.

    Parameters:
        python: the interpreter that runs `-m nomadpaas.slugbuilder task` on the node;
            default this process's own (`sys.executable`): the embedded agent runs tasks
            on this machine. On a real cluster, every node that may run builds needs
            nomadpaas installed at that path (or pass the node's interpreter).
        buildpacks_dir: exported as NOMADPAAS_BUILDPACKS_DIR; default the slug builder's
            own default (the repository's or installation's `buildpacks/`).
        datacenters: where builds may run; default the template's (`*`).
        env: extra task environment (no credentials: the schema refuses such names).
        validate: False leaves the check to the caller, who must `validate_job(job,
            "build")` before sending the job to Nomad (`build.ensure_build_job` does,
            only when it registers: a job already registered as rendered is not sent).
    """
    if buildpacks_dir is None:
        from nomadpaas.slugbuilder.models import default_buildpacks_dir

        buildpacks_dir = default_buildpacks_dir()
    job = load_template("build")
    task = job["TaskGroups"][0]["Tasks"][0]
    task["Config"]["command"] = python or sys.executable
    task["Env"] = {
        **task.get("Env", {}),
        "NOMADPAAS_BUILDPACKS_DIR": str(Path(buildpacks_dir).resolve()),
        **(env or {}),
    }
    if datacenters is not None:
        job["Datacenters"] = list(datacenters)
    if validate:
        validate_job(job, "build")
    return job
