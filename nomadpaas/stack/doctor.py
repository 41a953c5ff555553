"""`doctor`: check each endpoint the platform needs and say what is wrong and what to do.

Works against the embedded stack (its record under NOMADPAAS_HOME) and against a real
cluster (NOMAD_ADDR, NOMAD_TOKEN, NOMADPAAS_S3_ENDPOINT from the environment).
"""

from __future__ import annotations

import stat
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from nomadpaas.errors import NomadPaasError, NotFound, Unreachable
from nomadpaas.settings import STACK_FILE, Settings
from nomadpaas.stack.embedded import SERVICES
from nomadpaas.stack.process import is_ours
from nomadpaas.stack.record import StackRecord, load_record

__all__ = ["Check", "DoctorReport", "diagnose"]

#: Seconds one probe may take: a healthy loopback server answers in milliseconds.
PROBE_TIMEOUT_S = 3.0
#: A key that never exists: reading it proves bucket and credentials without listing.
_PROBE_KEY = ".nomadpaas-doctor-probe"
_UP_HINT = "Start the embedded stack with `nomadpaas up`."

Status = Literal["ok", "fail", "info"]


@dataclass(frozen=True)
class Check:
    """One finding. `unreachable` marks failures that mean "cannot reach" (exit 6)."""

    name: str
    status: Status
    message: str
    hint: str | None = None
    unreachable: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "hint": self.hint,
            "unreachable": self.unreachable,
        }


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 all passed · 6 something could not be reached · 1 any other failure."""
        failed = [c for c in self.checks if c.status == "fail"]
        if not failed:
            return 0
        return 6 if any(c.unreachable for c in failed) else 1


def diagnose(settings: Settings, *, timeout: float = PROBE_TIMEOUT_S) -> DoctorReport:
    """Run every check; never raises for what it finds (that is what the report is for)."""
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        return DoctorReport(tuple(_checks(settings, client, timeout)))


def _uses_stack(settings: Settings, record: StackRecord | None) -> bool:
    return record is not None and (settings.embedded or settings.nomad_addr == record.nomad_addr)


def _checks(settings: Settings, client: httpx.Client, timeout: float) -> Iterator[Check]:
    record = load_record(settings.home)
    if record is not None and _uses_stack(settings, record):
        yield from _stack_checks(record)
    elif record is None:
        yield Check(
            "stack",
            "info",
            f"no embedded stack under {settings.home} (no {STACK_FILE}); "
            f"checking NOMAD_ADDR={settings.nomad_addr}",
            hint=None if settings.nomad_addr != Settings().nomad_addr else _UP_HINT,
        )
    else:
        yield Check(
            "stack",
            "info",
            f"embedded stack under {settings.home} not in use: NOMAD_ADDR={settings.nomad_addr}",
        )
    nomad_ok = yield from _nomad_checks(settings, client)
    if nomad_ok:
        yield _token_check(settings, client)
    yield from _s3_checks(settings, client, timeout)
    yield _consul_check(settings, client)


def _stack_checks(record: StackRecord) -> Iterator[Check]:
    for name in SERVICES:
        proc = record.processes.get(name)
        if proc is None:
            yield Check(f"stack.{name}", "fail", f"{name} is not running", _UP_HINT, True)
        elif not is_ours(proc):
            yield Check(
                f"stack.{name}",
                "fail",
                f"{name} (pid {proc.pid}) has exited; its log: {proc.log}",
                "Run `nomadpaas up` to start it again (data is kept).",
                True,
            )
        else:
            yield Check(f"stack.{name}", "ok", f"{name} is running (pid {proc.pid})")
    token_file = Path(record.token_file)
    try:
        mode = stat.S_IMODE(token_file.stat().st_mode)
    except OSError:
        yield Check("stack.token-file", "fail", f"{token_file} is missing", _UP_HINT)
        return
    if mode & 0o077:
        yield Check(
            "stack.token-file",
            "fail",
            f"{token_file} is readable by others (mode {mode:04o})",
            f"chmod 600 {token_file}",
        )
    else:
        yield Check("stack.token-file", "ok", f"{token_file} is private (mode {mode:04o})")


def _nomad_checks(settings: Settings, client: httpx.Client) -> Generator[Check, None, bool]:
    url = f"{settings.nomad_addr}/v1/status/leader"
    hint = _UP_HINT if settings.embedded else "Check NOMAD_ADDR and that Nomad runs there."
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        yield Check("nomad", "fail", f"Nomad at {settings.nomad_addr} does not answer: {exc}",
                    hint, True)  # fmt: skip
        return False
    if response.status_code != 200:
        yield Check(
            "nomad",
            "fail",
            f"Nomad at {settings.nomad_addr} answered {url} with HTTP {response.status_code}",
            hint,
        )
        return False
    yield Check("nomad", "ok", f"Nomad answers at {settings.nomad_addr} (leader {response.text})")
    return True


def _token_check(settings: Settings, client: httpx.Client) -> Check:
    headers = {"X-Nomad-Token": settings.nomad_token} if settings.nomad_token else {}
    try:
        response = client.get(f"{settings.nomad_addr}/v1/agent/self", headers=headers)
    except httpx.HTTPError as exc:
        return Check("nomad.token", "fail", f"Nomad stopped answering: {exc}", None, True)
    if response.status_code == 200:
        what = "NOMAD_TOKEN is accepted" if settings.nomad_token else "no token needed (ACLs off)"
        return Check("nomad.token", "ok", what)
    if response.status_code == 403:
        if not settings.nomad_token:
            return Check(
                "nomad.token",
                "fail",
                "Nomad requires a token and NOMAD_TOKEN is not set",
                'Run `eval "$(nomadpaas up --env)"`, or set NOMAD_TOKEN.',
            )
        return Check(
            "nomad.token",
            "fail",
            "Nomad refused NOMAD_TOKEN (403 Permission denied)",
            'Check NOMAD_TOKEN (for the embedded stack: eval "$(nomadpaas up --env)").',
        )
    return Check(
        "nomad.token", "fail", f"/v1/agent/self answered HTTP {response.status_code}", None
    )


def _s3_checks(settings: Settings, client: httpx.Client, timeout: float) -> Iterator[Check]:
    endpoint = settings.s3_endpoint
    hint = _UP_HINT if settings.embedded else "Check NOMADPAAS_S3_ENDPOINT."
    if endpoint is not None:
        try:
            response = client.get(f"{endpoint}/")
        except httpx.HTTPError as exc:
            yield Check("s3", "fail", f"S3 at {endpoint} does not answer: {exc}", hint, True)
            return
        if response.status_code >= 500:
            yield Check("s3", "fail", f"S3 at {endpoint} answered HTTP {response.status_code}",
                        hint, True)  # fmt: skip
            return
        yield Check("s3", "ok", f"S3 answers at {endpoint}")
    yield _bucket_check(settings, timeout)


def _bucket_check(settings: Settings, timeout: float) -> Check:
    """Signed, with the platform's own credentials: exists, or can be created now."""
    from nomadpaas.storage.s3 import S3Storage  # lazily: boto3 is slow to import

    bucket = settings.s3_bucket
    try:
        storage = S3Storage.from_settings(
            settings, max_attempts=1, connect_timeout_s=timeout, read_timeout_s=timeout
        )
        where = storage.endpoint
        try:
            storage.exists(_PROBE_KEY)
            return Check("s3.bucket", "ok", f"bucket {bucket} at {where} is readable")
        except NotFound:
            storage.ensure_bucket()
            return Check("s3.bucket", "ok", f"bucket {bucket} at {where} was missing; created it")
    except Unreachable as err:
        return Check("s3.bucket", "fail", err.message, err.hint, True)
    except NomadPaasError as err:
        return Check("s3.bucket", "fail", err.message, err.hint)


def _consul_check(settings: Settings, client: httpx.Client) -> Check:
    try:
        response = client.get(f"{settings.consul_addr}/v1/status/leader")
    except httpx.HTTPError:
        response = None
    if response is not None and response.status_code == 200:
        return Check("consul", "ok", f"Consul answers at {settings.consul_addr}")
    what = "does not answer" if response is None else f"answers {response.status_code}"
    return Check(
        "consul",
        "fail",
        f"Consul at {settings.consul_addr} {what}; health checks and routing need it.",
        "Restart the embedded stack (`nomadpaas down && nomadpaas up`), "
        "or set CONSUL_HTTP_ADDR to your Consul agent.",
        response is None,
    )
