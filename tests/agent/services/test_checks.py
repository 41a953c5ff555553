"""HTTP and TCP check runners against real local servers: status mapping (2xx passing,
429 warning, else critical), timeouts, refused connections, method/headers/body, and the
single-loop CheckRunner with its intervals."""

from __future__ import annotations

import asyncio
import os
import socket
import threading

import httpx
from agent.services.services_support import Upstream, wait_for
from testsupport import free_port, threads_started_from

from nomadpaas.agent.client.serviceregistration import checks as checks_module
from nomadpaas.agent.client.serviceregistration.checks import (
    STATUS_CRITICAL,
    STATUS_PASSING,
    STATUS_WARNING,
    CheckResult,
    CheckRunner,
    CheckSpec,
    probe_http,
    probe_tcp,
)


def _http(port: int, path: str, **kw: object) -> CheckSpec:
    return CheckSpec(type="http", address="127.0.0.1", port=port, interval_s=1.0, path=path, **kw)  # type: ignore[arg-type]


def _probe(spec: CheckSpec) -> CheckResult:
    async def run() -> CheckResult:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await probe_http(spec, client)

    return asyncio.run(run())


def test_http_status_mapping() -> None:
    with Upstream() as up:
        for code, expected in [(200, STATUS_PASSING), (204, STATUS_PASSING),
                               (429, STATUS_WARNING), (500, STATUS_CRITICAL),
                               (404, STATUS_CRITICAL), (301, STATUS_CRITICAL)]:  # fmt: skip
            up.status = code
            result = _probe(_http(up.port, "/status"))
            assert result.status == expected, (code, result)
            assert result.status_code == code
        up.status = 200
        result = _probe(_http(up.port, "/status"))
    assert result.output == (
        f"HTTP GET http://127.0.0.1:{up.port}/status: 200 OK Output: status 200"
    )


def test_http_method_headers_and_body() -> None:
    with Upstream() as up:
        spec = _http(up.port, "echo", method="POST", headers={"X-Probe": ["a", "b"]}, body="ping")
        result = _probe(spec)
        method, path, headers, body = up.requests[-1]
    assert result.status == STATUS_PASSING
    assert (method, path, body) == ("POST", "/echo", b"ping")
    assert headers["X-Probe"] == "a, b"
    assert headers["User-Agent"] == "Consul Health Check"


def test_http_timeout_and_refused_are_critical() -> None:
    with Upstream() as up:
        up.slow_s = 3.0
        result = _probe(_http(up.port, "/slow", timeout_s=0.3))
    assert result.status == STATUS_CRITICAL
    assert "context deadline exceeded" in result.output
    closed = free_port()
    result = _probe(_http(closed, "/"))
    assert result.status == STATUS_CRITICAL
    assert result.output.endswith(f"dial tcp 127.0.0.1:{closed}: connect: connection refused")


def test_tcp_check_passing_and_refused() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        spec = CheckSpec(type="tcp", address="127.0.0.1", port=port, interval_s=1.0)
        ok = asyncio.run(probe_tcp(spec))
    finally:
        listener.close()
    assert ok.status == STATUS_PASSING
    assert ok.output == f"TCP connect 127.0.0.1:{port}: Success"
    refused = asyncio.run(probe_tcp(spec))
    assert refused.status == STATUS_CRITICAL
    assert refused.output == f"dial tcp 127.0.0.1:{port}: connect: connection refused"


def test_runner_runs_every_check_on_one_thread_each_interval() -> None:
    results: dict[str, list[CheckResult]] = {}
    threads: set[str] = set()
    lock = threading.Lock()

    def on_result(check_id: str, result: CheckResult) -> None:
        with lock:
            results.setdefault(check_id, []).append(result)
            threads.add(threading.current_thread().name)

    runner = CheckRunner(on_result)
    package = os.path.dirname(checks_module.__file__)
    with Upstream() as up, threads_started_from(package) as started:
        runner.start()
        try:
            for i in range(20):
                runner.add(f"c{i}", _http(up.port, f"/status?{i}"))
            runner.add("tcp", CheckSpec(type="tcp", address="127.0.0.1", port=up.port,
                                        interval_s=1.0))  # fmt: skip
            # Every check runs at once, then again after its 1 s interval.
            wait_for(lambda: len(results) == 21 and all(len(r) >= 2 for r in results.values()))
            # One thread for all checks.
            assert [t.name for t in started] == ["service-checks"]
            runner.remove("c0")
            with lock:
                seen = len(results["c0"])
            up.status = 500
            wait_for(lambda: results["c1"][-1].status == STATUS_CRITICAL)
            assert len(results["c0"]) <= seen + 1  # at most one probe already in flight
            assert runner.check_ids() == sorted([f"c{i}" for i in range(1, 20)] + ["tcp"])
        finally:
            runner.stop()
    assert threads == {"service-checks"}
    first, second = results["c1"][0], results["c1"][1]
    assert 0.8 <= (second.timestamp_ns - first.timestamp_ns) / 1e9 <= 10.0
