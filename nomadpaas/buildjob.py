"""The `nomadpaas-build` job: a build's IDs, and registering the job when it must be.

`new_build_id` names a build, `idempotency_token` makes a retried dispatch of it create
no second child, and `ensure_build_job` registers `nomadpaas-build` only when Nomad's
copy is missing, stopped or different (never someone else's job of that name).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from nomadpaas import jobspec
from nomadpaas.errors import Conflict
from nomadpaas.nomad.jobs import Jobs

__all__ = ["ensure_build_job", "idempotency_token", "new_build_id"]


def new_build_id(now: datetime | None = None) -> str:
    """`20261128T141501Z-1a2b3c4d`: sortable by time, unique by the random suffix."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def idempotency_token(app: str, source_sha256: str, build_id: str) -> str:
    """The dispatch token: a retried dispatch of the same build creates no second child."""
    digest = hashlib.sha256(f"{app}\0{source_sha256}\0{build_id}".encode()).hexdigest()
    return f"nomadpaas-build-{digest[:32]}"


def _covers(actual: Any, wanted: Any) -> bool:
    """True when every value we render is what Nomad holds (Nomad adds its defaults, so
    equality would always fail; a subset check tells a real difference)."""
    if isinstance(wanted, Mapping):
        return isinstance(actual, Mapping) and all(
            _covers(actual.get(k), v) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(wanted)
            and all(_covers(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    return bool(actual == wanted)


#: `ensure_build_job(existing=...)` not given: read the job.
_UNREAD: Any = object()


def ensure_build_job(
    jobs: Jobs, rendered: Mapping[str, Any], *, existing: Mapping[str, Any] | None = _UNREAD
) -> bool:
    """Register `nomadpaas-build` when missing, stopped or different; True if registered.

    `existing`: the job as just read (`jobs.get`, None when missing), when the caller
    read it ahead; by default it is read here. Raises Conflict when a job of that name
    exists without `nomadpaas.role = build` (someone else's job: never overwritten), and
    InvalidInput when `rendered` fails the build job's schema (checked only before it is
    sent: `run_build` renders without validating, as most pushes send no job).
    """
    job_id = str(rendered["ID"])
    if existing is _UNREAD:
        existing = jobs.get(job_id)
    if existing is not None:
        meta = existing.get("Meta") or {}
        if meta.get(jobspec.ROLE_META_KEY) != jobspec.BUILD_ROLE:
            raise Conflict(
                f"Nomad already has a job {job_id} that nomadpaas did not create "
                f"(its Meta lacks {jobspec.ROLE_META_KEY} = {jobspec.BUILD_ROLE}).",
                hint=f"Rename or stop that job (`nomad job stop -purge {job_id}`), then retry.",
            )
        if not existing.get("Stop") and _covers(existing, rendered):
            return False
    jobspec.validate_job(rendered, "build")
    jobs.register(rendered)
    return True
