"""Frozen dataclasses the library returns: App, Release, ConfigVars, Build, BuildEvent.

snake_case in Python; Nomad's PascalCase lives only in `nomadpaas.nomad`. Each model has
`to_dict()`, the JSON form the CLI prints with `--json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "App",
    "Build",
    "BuildEvent",
    "ConfigVars",
    "PushResult",
    "Release",
    "iso",
    "parse_iso",
]


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, to the second: what `--json` and the records carry."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str | None) -> datetime:
    """The inverse of `iso`; the Unix epoch for a missing value (records written by hand)."""
    if not value:
        return datetime.fromtimestamp(0, UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class App:
    """An app: the record `nomadpaas/apps/<name>`.

    Parameters:
        name: the app name (a DNS label).
        created_at: when `apps create` ran (UTC).
        latest_release: the highest release number assigned so far (0: none yet).
        web_url: where the router serves the app's `web` process.
    """

    name: str
    created_at: datetime
    latest_release: int = 0
    web_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created_at": iso(self.created_at),
            "latest_release": self.latest_release,
            "web_url": self.web_url,
        }


@dataclass(frozen=True)
class ConfigVars:
    """An app's config vars (12factor III) as stored in `nomadpaas/apps/<app>/config`.

    `index` is the variable's ModifyIndex (0 when the app has no config yet).
    """

    app: str
    vars: Mapping[str, str] = field(default_factory=dict)
    index: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(sorted(self.vars.items()))


@dataclass(frozen=True)
class Release:
    """One immutable release `v<N>`: a slug plus the config it runs with.

    Parameters:
        app: the app name.
        version: N, assigned with check-and-set and never reused.
        description: what made it, Heroku-style ("Set A, B config vars", "Deploy 1a2b3c4").
        created_at: when it was recorded (UTC).
        status: `succeeded`, `pending` or `failed` (Heroku's release statuses).
        config: the config vars snapshot the release runs with.
        slug_key: the S3 key of the slug, None before the first build.
        slug_sha256: the slug's sha256, None before the first build.
        process_types: Procfile process type → command.
        formation: process type → instance count.
        source_digest: sha256 of the source tarball the slug was built from.
    """

    app: str
    version: int
    description: str
    created_at: datetime
    status: str = "succeeded"
    config: Mapping[str, str] = field(default_factory=dict)
    slug_key: str | None = None
    slug_sha256: str | None = None
    process_types: Mapping[str, str] = field(default_factory=dict)
    formation: Mapping[str, int] = field(default_factory=dict)
    source_digest: str | None = None

    @property
    def name(self) -> str:
        """`v<N>`, as users write it."""
        return f"v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "created_at": iso(self.created_at),
            "status": self.status,
            "config": dict(sorted(self.config.items())),
            "slug_key": self.slug_key,
            "slug_sha256": self.slug_sha256,
            "process_types": dict(self.process_types),
            "formation": dict(self.formation),
            "source_digest": self.source_digest,
        }


@dataclass(frozen=True)
class BuildEvent:
    """One progress event of `Platform.build`, for the CLI to render or print as NDJSON.

    `kind` is one of:

    - `packed`: the source tarball is ready (data: files, bytes, sha256, ignored, warnings)
    - `upload`: upload progress (data: sent, total bytes); `uploaded` when done
    - `source-exists`: an identical source is in storage already; nothing uploaded
    - `job-registered` / `job-current`: the build job was (re)registered / was up to date
    - `dispatched`: the build was dispatched (data: job_id, eval_id, deduplicated)
    - `allocated`: the build has an allocation (data: alloc_id)
    - `log`: one line of build output, `message` verbatim (live, as the task prints it)
    - `finished`: the build ended (data: status)
    - `warning`: something the user should know (`message`)

    `Platform.push` adds `unchanged` (data: release, sha256: nothing built) and
    `released` (data: release, version).
    """

    kind: str
    message: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, "message": self.message, **dict(self.data)}


@dataclass(frozen=True)
class Build:
    """One build: its source, the Nomad job that ran it and, when it succeeded, its slug.

    Parameters:
        app: the app name.
        build_id: unique per build; the build record is `builds/<app>/<build_id>.json`.
        status: `pending` (dispatched with `detach`), `succeeded` or `failed`.
        source_sha256: digest of the uploaded source tarball.
        source_key: its S3 key.
        job_id: the dispatched child job (`nomadpaas-build/dispatch-…`).
        alloc_id: the allocation that ran it.
        slug_key, slug_sha256, slug_bytes: the slug (content-addressed), when built.
        process_types: Procfile process type → command, from the slug metadata.
        buildpack: the detected buildpack's description (`Python`, `Node.js`, …).
        stack: the build stack.
        commit: the source's commit, when known.
        started_at, finished_at, duration_s: timings from the build record.
        step: the last build step reached (the failing one for a failed build).
        error: why it failed.
        log_tail: the last lines of build output.
        warnings: build warnings.
    """

    app: str
    build_id: str
    status: str
    source_sha256: str
    source_key: str
    job_id: str | None = None
    alloc_id: str | None = None
    slug_key: str | None = None
    slug_sha256: str | None = None
    slug_bytes: int | None = None
    process_types: Mapping[str, str] = field(default_factory=dict)
    buildpack: str | None = None
    stack: str | None = None
    commit: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    step: str | None = None
    error: str | None = None
    log_tail: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "build_id": self.build_id,
            "status": self.status,
            "source_sha256": self.source_sha256,
            "source_key": self.source_key,
            "job_id": self.job_id,
            "alloc_id": self.alloc_id,
            "slug_key": self.slug_key,
            "slug_sha256": self.slug_sha256,
            "slug_bytes": self.slug_bytes,
            "process_types": dict(self.process_types),
            "buildpack": self.buildpack,
            "stack": self.stack,
            "commit": self.commit,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": self.duration_s,
            "step": self.step,
            "error": self.error,
            "log_tail": list(self.log_tail),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class PushResult:
    """What `Platform.push` did.

    Parameters:
        app: the app name.
        status: `released` (built, release recorded), `unchanged` (the latest release
            has this very source: nothing built or recorded) or `dispatched` (`detach`:
            the build goes on in Nomad, no release recorded).
        source_sha256: digest of the packed source.
        build: the build (None when unchanged).
        release: the new release; for `unchanged`, the latest one; None when dispatched.
    """

    app: str
    status: str
    source_sha256: str | None
    build: Build | None = None
    release: Release | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "status": self.status,
            "source_sha256": self.source_sha256,
            "build": self.build.to_dict() if self.build else None,
            "release": self.release.to_dict() if self.release else None,
        }
