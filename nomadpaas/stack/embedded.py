"""Start and stop the embedded stack (agent + durable S3) under NOMADPAAS_HOME.

`up` starts each server detached (own session, output to `logs/`), waits until it
answers, and records addresses, credentials and process identities in `stack.json`;
`down` stops exactly those processes. Layout under the home:

    stack.json      the record (mode 0600)      acl-token   the agent's token (0600)
    agent/          the agent's data dir        s3/         the S3 server's data dir
    logs/agent.log  logs/s3.log                 .stack.lock serialises up/down
    build-cache/    the node-local build cache (agent `-meta nomadpaas.build_cache_dir`;
                    delete it while no build runs to reclaim the disk)

Servers that are still running (same PID, start time and command line) are kept, never
started twice; dead ones are started again on the same data dirs, so jobs, variables and
objects survive a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import httpx

from nomadpaas.errors import NomadPaasError, TimedOut
from nomadpaas.stack.ports import LOOPBACK, choose_port, listened_by
from nomadpaas.stack.process import ProcessRecord, is_ours, pid_alive, spawn_detached, terminate
from nomadpaas.stack.record import REGION, StackRecord, load_record, port_of, save_record

__all__ = [
    "DEFAULT_CONSUL_PORT",
    "DEFAULT_NOMAD_PORT",
    "DEFAULT_S3_PORT",
    "SERVICES",
    "DownResult",
    "StackEvent",
    "UpResult",
    "down",
    "running",
    "up",
]

DEFAULT_NOMAD_PORT = 4646
DEFAULT_CONSUL_PORT = 8500
#: Next to Nomad's 4646-4648; far from 9000 (MinIO) and 5000 (moto, Flask, AirPlay).
DEFAULT_S3_PORT = 4649
BUCKET = "nomadpaas"
ACCESS_KEY_ID = "nomadpaas"
SERVICES = ("agent", "s3")
#: The node meta key the build job reads its node-local cache dir from, and its dir here.
BUILD_CACHE_META = "nomadpaas.build_cache_dir"
BUILD_CACHE_DIRNAME = "build-cache"
#: Seconds one readiness probe may take; the loop retries until the overall timeout.
_PROBE_TIMEOUT_S = 1.0
_POLL_S = 0.1

EventKind = Literal["running", "stale", "starting", "ready", "stopping", "stopped", "warning"]


@dataclass(frozen=True)
class StackEvent:
    """Progress of `up`/`down`, for the CLI to render. `service` is "agent" or "s3"."""

    kind: EventKind
    service: str
    message: str


OnEvent = Callable[[StackEvent], None]


@dataclass(frozen=True)
class UpResult:
    """What `up` did: `started` names the servers it started (empty: all were running)."""

    record: StackRecord
    started: tuple[str, ...]

    @property
    def already_running(self) -> bool:
        return not self.started


@dataclass(frozen=True)
class DownResult:
    """What `down` did: servers it stopped, and entries it dropped without signalling
    (already dead, or the PID now belongs to another process)."""

    stopped: tuple[str, ...]
    not_running: tuple[str, ...]


@dataclass(frozen=True)
class _Ports:
    nomad: int
    consul: int
    s3: int


#: Builds a server's argv from its ports and paths; replaceable in tests.
ArgvFactory = Callable[[str, _Ports, Path], list[str]]


def server_argv(service: str, ports: _Ports, home: Path) -> list[str]:
    """The command lines of the two servers (fixed by tests/testsupport.py)."""
    if service == "agent":
        return [
            sys.executable, "-m", "nomadpaas", "agent", "--dev",
            "--bind", LOOPBACK,
            "--http-port", str(ports.nomad),
            "--consul-port", str(ports.consul),
            "--data-dir", str(home / "agent"),
            "--acl-token-file", str(home / "acl-token"),
            # The node-local tier of the build cache (jobs/build.nomad.json reads it).
            "-meta", f"{BUILD_CACHE_META}={home / BUILD_CACHE_DIRNAME}",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "nomadpaas.stack.s3server",
        "--bind", LOOPBACK, "--port", str(ports.s3), "--data-dir", str(home / "s3"),
    ]  # fmt: skip


def _ready_url(service: str, ports: _Ports) -> tuple[str, int]:
    if service == "agent":  # answers without a token, like Nomad's
        return f"http://{LOOPBACK}:{ports.nomad}/v1/status/leader", ports.nomad
    return f"http://{LOOPBACK}:{ports.s3}/", ports.s3


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Serialise `up` and `down` on one home, so two `up`s never both start servers."""
    fd = os.open(home / ".stack.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _noop(_: StackEvent) -> None:
    pass


def running(home: Path) -> StackRecord | None:
    """The record when every server of the stack runs, else None."""
    record = load_record(home)
    if record is None or set(record.processes) != set(SERVICES):
        return None
    return record if all(is_ours(p) for p in record.processes.values()) else None


def up(
    home: Path,
    *,
    nomad_port: int | None = None,
    consul_port: int | None = None,
    s3_port: int | None = None,
    timeout: float = 60.0,
    on_event: OnEvent | None = None,
    env: Mapping[str, str] | None = None,
    argv_factory: ArgvFactory = server_argv,
) -> UpResult:
    """Start whatever part of the embedded stack is not running; wait until it answers.

    Parameters:
        home: NOMADPAAS_HOME.
        nomad_port, consul_port, s3_port: 0 = any free port; None = last time's port if
            free, else the default (4646, 8500, 4649) if free, else any free port.
        timeout: seconds to wait for the servers; on expiry the ones started here are
            stopped and TimedOut is raised.
        on_event: receives progress (`StackEvent`).
        env: environment of the servers (default: ours).
        argv_factory: builds the servers' command lines (tests swap in stand-ins).

    Raises:
        InvalidInput: an explicitly requested port is in use.
        TimedOut: a server did not answer within `timeout`.
        NomadPaasError: a server exited before answering.
    """
    emit = on_event or _noop
    home = home.absolute()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(home):
        old = load_record(home)
        alive: dict[str, ProcessRecord] = {}
        for name, proc in (old.processes if old else {}).items():
            if name in SERVICES and is_ours(proc):
                alive[name] = proc
                emit(StackEvent("running", name, f"{name} is running (pid {proc.pid})"))
            else:
                emit(StackEvent("stale", name, f"{name} (pid {proc.pid}) is not running"))
        if old is not None and set(alive) == set(SERVICES):
            return UpResult(old, ())
        ports = _pick_ports(old, alive, nomad_port, consul_port, s3_port)
        record = StackRecord(
            home=home,
            nomad_addr=f"http://{LOOPBACK}:{ports.nomad}",
            consul_addr=f"http://{LOOPBACK}:{ports.consul}",
            s3_endpoint=f"http://{LOOPBACK}:{ports.s3}",
            s3_bucket=old.s3_bucket if old else BUCKET,
            token_file=str(home / "acl-token"),
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=(old.aws_secret_access_key if old else "")
            or secrets.token_hex(20),
            processes=dict(alive),
        )
        started = _start(record, ports, timeout, emit, env, argv_factory)
        record = replace(record, processes={**alive, **started})
        save_record(record)
        _ensure_bucket(record, emit)
        return UpResult(record, tuple(name for name in SERVICES if name in started))


def _pick_ports(
    old: StackRecord | None,
    alive: Mapping[str, ProcessRecord],
    nomad_port: int | None,
    consul_port: int | None,
    s3_port: int | None,
) -> _Ports:
    """Ports of running servers stay; the others are chosen afresh."""
    last_nomad = port_of(old.nomad_addr) if old else None
    last_consul = port_of(old.consul_addr) if old else None
    last_s3 = port_of(old.s3_endpoint) if old else None
    taken: list[int] = []
    if "agent" in alive and last_nomad and last_consul:
        nomad, consul = last_nomad, last_consul
    else:
        nomad = choose_port("--nomad-port", nomad_port, last_nomad, DEFAULT_NOMAD_PORT)
        consul = choose_port(
            "--consul-port", consul_port, last_consul, DEFAULT_CONSUL_PORT, [nomad]
        )
    taken = [nomad, consul]
    if "s3" in alive and last_s3:
        s3 = last_s3
    else:
        s3 = choose_port("--s3-port", s3_port, last_s3, DEFAULT_S3_PORT, taken)
    return _Ports(nomad, consul, s3)


def _start(
    record: StackRecord,
    ports: _Ports,
    timeout: float,
    emit: OnEvent,
    env: Mapping[str, str] | None,
    argv_factory: ArgvFactory,
) -> dict[str, ProcessRecord]:
    """Spawn the missing servers and wait for them; stop them all on any failure."""
    home = record.home
    server_env = dict(os.environ if env is None else env)
    server_env["PYTHONUNBUFFERED"] = "1"  # log lines reach logs/ as they happen
    started: dict[str, ProcessRecord] = {}
    try:
        for name in SERVICES:
            if name in record.processes:
                continue
            (home / name).mkdir(exist_ok=True, mode=0o700)
            argv = argv_factory(name, ports, home)
            proc = spawn_detached(argv, home / "logs" / f"{name}.log", server_env)
            started[name] = proc
            where = record.nomad_addr if name == "agent" else record.s3_endpoint
            emit(StackEvent("starting", name, f"starting {name} (pid {proc.pid}) on {where}"))
        _wait_ready(started, ports, record, time.monotonic() + timeout, timeout, emit)
    except BaseException:
        for proc in started.values():
            terminate(proc, timeout=5.0)
        raise
    return started


def _wait_ready(
    pending: Mapping[str, ProcessRecord],
    ports: _Ports,
    record: StackRecord,
    deadline: float,
    timeout: float,
    emit: OnEvent,
) -> None:
    waiting = dict(pending)
    with httpx.Client(timeout=_PROBE_TIMEOUT_S, trust_env=False) as client:
        while waiting:
            for name, proc in list(waiting.items()):
                if not pid_alive(proc.pid):
                    raise NomadPaasError(
                        f"The {name} server exited before answering.{_log_tail(proc.log)}",
                        hint=f"See its log: {proc.log}",
                    )
                url, port = _ready_url(name, ports)
                if _answers(client, url, name) and listened_by(proc.pid, port) is not False:
                    if name == "agent" and not record.token():
                        continue  # the agent writes its token file as it starts
                    del waiting[name]
                    emit(StackEvent("ready", name, f"{name} is ready"))
            if not waiting:
                return
            if time.monotonic() >= deadline:
                names = " and ".join(sorted(waiting))
                logs = ", ".join(waiting[n].log for n in sorted(waiting))
                raise TimedOut(
                    f"The {names} server did not answer within {timeout:g}s; stopped it.",
                    hint=f"See {logs}, or retry with a longer --timeout.",
                )
            time.sleep(_POLL_S)


def _answers(client: httpx.Client, url: str, name: str) -> bool:
    try:
        response = client.get(url)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 if name == "agent" else response.status_code < 500


def _log_tail(log: str, lines: int = 5) -> str:
    try:
        tail = Path(log).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return ("\nLast lines of its log:\n  " + "\n  ".join(tail)) if tail else ""


def _ensure_bucket(record: StackRecord, emit: OnEvent) -> None:
    """Create the platform's bucket with the stack's own credentials; warn, never fail."""
    from nomadpaas.storage.s3 import S3Storage  # lazily: boto3 is slow to import

    try:
        S3Storage(
            record.s3_endpoint,
            record.s3_bucket,
            region=REGION,
            access_key_id=record.aws_access_key_id,
            secret_access_key=record.aws_secret_access_key,
        ).ensure_bucket()
    except NomadPaasError as err:
        emit(StackEvent("warning", "s3", f"could not create bucket {record.s3_bucket}: {err}"))


def down(home: Path, *, timeout: float = 10.0, on_event: OnEvent | None = None) -> DownResult:
    """Stop the servers `up` started under `home` (SIGTERM, SIGKILL after `timeout` s).

    Only processes whose PID, start time and command line match the record are
    signalled. Data dirs and the record's addresses stay, so the next `up` reuses them.
    """
    emit = on_event or _noop
    home = home.absolute()
    if not home.is_dir():
        return DownResult((), ())
    with _locked(home):
        record = load_record(home)
        if record is None:
            return DownResult((), ())
        stopped: list[str] = []
        gone: list[str] = []
        for name, proc in record.processes.items():
            if not is_ours(proc):
                gone.append(name)
                continue
            emit(StackEvent("stopping", name, f"stopping {name} (pid {proc.pid})"))
            if terminate(proc, timeout):
                stopped.append(name)
                emit(StackEvent("stopped", name, f"{name} stopped"))
            else:
                gone.append(name)
        save_record(replace(record, processes={}))
        return DownResult(tuple(stopped), tuple(gone))
