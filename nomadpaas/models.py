"""Frozen dataclasses the library returns: App, Release, ConfigVars.

snake_case in Python; Nomad's PascalCase lives only in `nomadpaas.nomad`. Each model has
`to_dict()`, the JSON form the CLI prints with `--json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["App", "ConfigVars", "Release", "iso", "parse_iso"]


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
