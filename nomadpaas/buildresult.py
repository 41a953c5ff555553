"""A build's outcome: its record read back, its slug promoted, or `BuildJobFailed`.

The record (`builds/<app>/<id>.json`, or the task's result line standing in for it)
decides: a succeeded build's staging slug is copied to its content-addressed key
(`storage.promote`, checked against the record's MD5); a failed one's is deleted and
`BuildJobFailed` (exit 3) carries the failing step and the log tail.
"""

from __future__ import annotations

import contextlib
import json
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from dataclasses import replace
from typing import Any

from nomadpaas import jobspec
from nomadpaas.buildstage import Events
from nomadpaas.buildwatch import BuildWatcher, LineSplitter, task_failure
from nomadpaas.errors import BuildFailed, NomadPaasError, NotFound
from nomadpaas.models import Build
from nomadpaas.nomad.allocations import Allocation
from nomadpaas.storage import Storage, build_record_key, slug_key
from nomadpaas.storage.base import ObjectInfo
from nomadpaas.storage.promote import promote

__all__ = ["BuildJobFailed", "after_last", "finish", "read_build", "read_record"]


class BuildJobFailed(BuildFailed):
    """The build ran and failed (exit 3); carries the `Build` with its step and log tail."""

    def __init__(self, message: str, build: Build, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.build = build
        self.log_tail = list(build.log_tail)

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "build": self.build.to_dict()}


def after_last(lines: list[str], line: str) -> int:
    """The index just past the last `line` in `lines` (their length without one)."""
    for index in range(len(lines) - 1, -1, -1):
        if lines[index] == line:
            return index + 1
    return len(lines)


def read_record(storage: Storage, key: str) -> dict[str, Any] | None:
    try:
        record = json.loads(storage.get_bytes(key))
    except NotFound:
        return None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def read_build(storage: Storage, app: str, build_id: str) -> Build:
    """A finished build from its record (e.g. one dispatched with `detach`).

    NotFound while the build has not written its record (still running, or never ran).
    The slug key is where the build task stored it (promotion to the content-addressed
    key happens only in a non-detached `run_build`).
    """
    record = read_record(storage, build_record_key(app, build_id))
    if record is None:
        raise NotFound(
            f"Build {build_id} of {app} has no record yet (still running, or unknown).",
            hint="Wait for it, or check the nomadpaas-build job's allocations in Nomad.",
        )
    slug = record.get("slug") or {}
    error = record.get("error") or {}
    sha = slug.get("sha256")
    staging = f"slugs/{app}/staging/{build_id}.tar.gz"
    final = slug_key(app, sha) if sha else None
    return Build(
        app=app,
        build_id=build_id,
        status=str(record.get("status") or "failed"),
        source_sha256="",
        source_key="",
        slug_key=(final if final and storage.exists(final) else staging) if sha else None,
        slug_sha256=sha,
        slug_bytes=slug.get("compressed_bytes"),
        process_types=dict(slug.get("process_types") or {}),
        buildpack=slug.get("buildpack_description"),
        stack=record.get("stack"),
        commit=record.get("commit"),
        started_at=record.get("started_at"),
        finished_at=record.get("finished_at"),
        duration_s=record.get("duration_s"),
        step=record.get("step"),
        error=error.get("message"),
        log_tail=tuple(record.get("log_tail") or ()),
        warnings=tuple(slug.get("warnings") or ()),
    )


def finish(
    storage: Storage,
    watcher: BuildWatcher,
    base: Build,
    alloc: Allocation,
    lines: LineSplitter,
    record: dict[str, Any] | None,
    staging_key: str,
    events: Events,
    staged: ObjectInfo | None = None,
    *,
    look: bool = True,
    promoted: Future[str | None] | None = None,
) -> Build:
    """The build's outcome from its record (None: none was stored): the slug promoted,
    or `BuildJobFailed`. `promoted`: a promote started early, on the task's result line
    (its None: not done); a succeeded build takes its key, a failed one only waits for it
    to end (the slug's content-addressed copy is left then: a release may share it)."""
    state = alloc.task_states.get(jobspec.BUILD_TASK)
    # The record decides: the task stores it once the slug is up, before it saves the
    # cache, so the allocation may still be running (or fail later, in the cache save).
    succeeded = record is not None and record.get("status") == "succeeded"
    common: dict[str, Any] = {
        "alloc_id": alloc.id,
        "started_at": (record or {}).get("started_at"),
        "finished_at": (record or {}).get("finished_at"),
        "duration_s": (record or {}).get("duration_s"),
        "step": (record or {}).get("step"),
        "log_tail": tuple((record or {}).get("log_tail") or lines.tail),
    }
    if succeeded and record is not None:
        slug = record.get("slug") or {}
        sha = str(slug.get("sha256") or "")
        md5 = str(slug.get("md5") or "")
        final_key = promoted.result() if promoted is not None else None
        if final_key is None:
            final_key = promote(storage, staging_key, base.app, sha, md5, staged, look=look)
        build = replace(
            base,
            status="succeeded",
            slug_key=final_key,
            slug_sha256=sha,
            slug_bytes=int(slug.get("compressed_bytes") or 0),
            process_types=dict(slug.get("process_types") or {}),
            buildpack=slug.get("buildpack_description"),
            warnings=tuple(slug.get("warnings") or ()),
            **common,
        )
        events("finished", "Build succeeded", status="succeeded", slug_key=final_key)
        return build

    if promoted is not None:
        futures_wait([promoted])  # it deletes the staging slug: before the delete below
    with contextlib.suppress(NomadPaasError):
        storage.delete(staging_key)
    if record is not None and record.get("error"):
        error = str(record["error"].get("message") or "the build failed")
        hint = record["error"].get("hint")
    else:
        error = task_failure(alloc, state)
        hint = None
        stderr = watcher.stderr_tail(alloc.id)
        if stderr:
            common["log_tail"] = (*common["log_tail"], *stderr)[-30:]
    build = replace(base, status="failed", error=error, **common)
    events("finished", "Build failed", status="failed")
    step = f" at step '{build.step}'" if build.step else ""
    raise BuildJobFailed(
        f"The build of {base.app} failed{step}: {error}",
        build,
        hint=hint or "Read the build output above, fix the app and push again.",
    )
