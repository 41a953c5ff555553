"""Runs the HTTP and TCP service checks of every registered service on one asyncio loop;
mirrors Consul's agent/checks (CheckHTTP, CheckTCP) and Nomad's
client/serviceregistration/checks/checkstore + client.go (the checker).

One thread owns one event loop; every check is a coroutine on it that probes, reports
the result, then sleeps its `Interval`. A thousand checks cost one thread, not a
thousand. Results use Consul's statuses (`passing`, `warning`, `critical`); the registry
maps them to Nomad's (`success`, `failure`) for Nomad-provider checks.

Status rules (Consul's CheckHTTP): 2xx is passing, 429 Too Many Requests is warning,
anything else, a refused connection or a timeout is critical. TCP: a completed connect is
passing, anything else critical.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus

import httpx

log = logging.getLogger("nomadpaas.agent.client.serviceregistration.checks")

STATUS_PASSING = "passing"
STATUS_WARNING = "warning"
STATUS_CRITICAL = "critical"
CHECK_HTTP = "http"
CHECK_TCP = "tcp"
SUPPORTED_TYPES = (CHECK_HTTP, CHECK_TCP)

DEFAULT_TIMEOUT_S = 10.0  # Consul's default when a check has no Timeout
MIN_INTERVAL_S = 1.0  # Consul and Nomad both refuse intervals below 1s
OUTPUT_MAX_BYTES = 4096  # Consul keeps at most 4 KiB of a response body as Output
STOP_JOIN_S = 5.0
# Consul's HTTP checks identify themselves and accept any text, unless the check's
# Header overrides these.
DEFAULT_HEADERS: dict[str, str] = {
    "User-Agent": "Consul Health Check",
    "Accept": "text/plain, text/*, */*",
}


@dataclass(frozen=True)
class CheckSpec:
    """What to probe and how often. `headers` is Nomad's `Header{k:[v]}`."""

    type: str
    address: str
    port: int
    interval_s: float
    timeout_s: float = DEFAULT_TIMEOUT_S
    path: str = "/"
    method: str = "GET"
    protocol: str = "http"
    headers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    body: str = ""
    tls_skip_verify: bool = False

    def url(self) -> str:
        scheme = self.protocol or "http"
        path = self.path if self.path.startswith("/") else f"/{self.path}"
        return f"{scheme}://{_host_port(self.address, self.port)}{path}"


@dataclass(frozen=True)
class CheckResult:
    """One probe: Consul status, Consul-style Output, HTTP status code (0 if none)."""

    status: str
    output: str
    status_code: int
    timestamp_ns: int


OnResult = Callable[[str, CheckResult], None]


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def http_status(code: int) -> str:
    """Consul's mapping of an HTTP status code to a check status."""
    if 200 <= code < 300:
        return STATUS_PASSING
    if code == HTTPStatus.TOO_MANY_REQUESTS:
        return STATUS_WARNING
    return STATUS_CRITICAL


async def probe_http(spec: CheckSpec, client: httpx.AsyncClient) -> CheckResult:
    url = spec.url()
    method = (spec.method or "GET").upper()
    headers = dict(DEFAULT_HEADERS)
    for name, values in (spec.headers or {}).items():
        if values:
            headers[name] = ", ".join(str(v) for v in values)
    try:
        async with asyncio.timeout(spec.timeout_s):
            async with client.stream(
                method, url, headers=headers, content=spec.body.encode() or None
            ) as resp:
                body = b""
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) >= OUTPUT_MAX_BYTES:
                        break
    except TimeoutError:
        return _result(
            STATUS_CRITICAL,
            f'{method.title()} "{url}": context deadline exceeded '
            "(Client.Timeout exceeded while awaiting headers)",
        )
    except httpx.HTTPError as exc:
        return _result(STATUS_CRITICAL, f'{method.title()} "{url}": {_describe(exc, spec)}')
    text = body[:OUTPUT_MAX_BYTES].decode("utf-8", errors="replace")
    reason = resp.reason_phrase or _reason(resp.status_code)
    output = f"HTTP {method} {url}: {resp.status_code} {reason} Output: {text}"
    return _result(http_status(resp.status_code), output, resp.status_code)


async def probe_tcp(spec: CheckSpec) -> CheckResult:
    target = _host_port(spec.address, spec.port)
    try:
        async with asyncio.timeout(spec.timeout_s):
            _, writer = await asyncio.open_connection(spec.address, spec.port)
    except TimeoutError:
        return _result(STATUS_CRITICAL, f"dial tcp {target}: i/o timeout")
    except OSError as exc:
        return _result(STATUS_CRITICAL, f"dial tcp {target}: connect: {_os_reason(exc)}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return _result(STATUS_PASSING, f"TCP connect {target}: Success")


def _result(status: str, output: str, code: int = 0) -> CheckResult:
    return CheckResult(status, output, code, time.time_ns())


def _reason(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


def _os_reason(exc: OSError) -> str:
    # Go's wording: "connection refused", not Python's "[Errno 111] Connect call failed".
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return exc.strerror.lower() if exc.strerror else str(exc)


def _describe(exc: httpx.HTTPError, spec: CheckSpec) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    if isinstance(exc, httpx.ConnectError):
        # httpx wraps the socket error ("All connection attempts failed"): find it.
        # The deepest OSError with an errno is the socket's own (anyio puts a generic
        # "All connection attempts failed" OSError above it).
        found: OSError | None = None
        cause: BaseException | None = exc
        for _ in range(10):  # bounded walk down the cause chain
            if cause is None:
                break
            if isinstance(cause, OSError) and (found is None or cause.errno is not None):
                found = cause
            cause = cause.__cause__ or cause.__context__
        reason = _os_reason(found) if found is not None else str(exc)
        return f"dial tcp {_host_port(spec.address, spec.port)}: connect: {reason}"
    return str(exc) or type(exc).__name__


class CheckRunner:
    """Schedules every check on one loop thread; `on_result(check_id, result)` is called
    on that thread after each probe (keep it short and thread-safe)."""

    def __init__(self, on_result: OnResult, *, thread_name: str = "service-checks") -> None:
        self._on_result = on_result
        self._thread_name = thread_name
        self._lock = threading.Lock()
        self._specs: dict[str, CheckSpec] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._ready = threading.Event()

    # -- control (any thread) ---------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()
        self._ready.wait(STOP_JOIN_S)

    def stop(self) -> None:
        """Cancel every check and end the loop thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError, TimeoutError):  # the loop already closed
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(STOP_JOIN_S)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_JOIN_S)

    def add(self, check_id: str, spec: CheckSpec) -> None:
        """Start running `spec` (replacing a different spec under the same ID)."""
        if spec.type not in SUPPORTED_TYPES:
            raise ValueError(f"check type {spec.type!r} is not supported")
        with self._lock:
            if self._specs.get(check_id) == spec:
                return
            self._specs[check_id] = spec
            loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._schedule, check_id)

    def remove(self, check_id: str) -> None:
        with self._lock:
            self._specs.pop(check_id, None)
            loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._unschedule, check_id)

    def check_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._specs)

    # -- the loop thread --------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            asyncio.set_event_loop(loop)
            # No keep-alive (Consul disables it for checks: every probe is a fresh
            # connection) and no proxy settings from the environment.
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_keepalive_connections=0),
                trust_env=False,
                verify=True,
                follow_redirects=True,
            )
            with self._lock:
                self._loop = loop
                pending = list(self._specs)
            for check_id in pending:
                self._schedule(check_id)
            self._ready.set()
            loop.run_forever()
        finally:
            with self._lock:
                self._loop = None
            loop.close()

    async def _shutdown(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def _schedule(self, check_id: str) -> None:
        self._unschedule(check_id)
        with self._lock:
            spec = self._specs.get(check_id)
        if spec is not None:
            self._tasks[check_id] = asyncio.get_running_loop().create_task(
                self._check_loop(check_id, spec), name=f"check-{check_id}"
            )

    def _unschedule(self, check_id: str) -> None:
        task = self._tasks.pop(check_id, None)
        if task is not None:
            task.cancel()

    async def _check_loop(self, check_id: str, spec: CheckSpec) -> None:
        interval_s = max(spec.interval_s, MIN_INTERVAL_S)
        while True:
            result = await self._probe(spec)
            with self._lock:
                current = self._specs.get(check_id) == spec
            if not current:
                return  # removed or replaced while probing: its result is stale
            try:
                self._on_result(check_id, result)
            except Exception:
                log.exception("check %s: result callback failed", check_id)
            await asyncio.sleep(interval_s)

    async def _probe(self, spec: CheckSpec) -> CheckResult:
        if spec.type == CHECK_TCP:
            return await probe_tcp(spec)
        client = self._client
        if spec.tls_skip_verify or client is None:
            async with httpx.AsyncClient(
                limits=httpx.Limits(max_keepalive_connections=0),
                trust_env=False,
                verify=False,
                follow_redirects=True,
            ) as insecure:
                return await probe_http(spec, insecure)
        return await probe_http(spec, client)
