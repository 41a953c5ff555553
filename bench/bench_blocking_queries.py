"""Benchmark: 1,000 parked blocking queries on one agent — RSS while parked, and the
time for all of them to answer after one write — against a bare Starlette app doing
the same with an asyncio.Condition, measured in the same run.

    python bench/bench_blocking_queries.py [--polls 1000]

The client is raw asyncio sockets (httpx.AsyncClient is the bottleneck at this fan-out,
reference/tooling.md §5). Both servers run as child processes on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchsupport import free_port, status_kib

PARK_SETTLE_S = 1.5  # after the last request is sent, give the server time to park all
PARK_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 30.0
WAIT = "60s"  # longer than the whole measurement, so no poll times out on its own


async def request(
    port: int, method: str, target: str, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    status_line = await reader.readline()
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    payload = await reader.readexactly(int(headers.get("content-length", "0")))
    writer.close()
    return int(status_line.split()[1]), headers, payload


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited during startup")
        try:
            status, _, _ = asyncio.run(request(port, "GET", "/v1/status/leader"))
            if status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("server did not become ready")


async def run_round(
    port: int, pid: int, polls: int, list_path: str, write: tuple[str, str, bytes]
) -> tuple[float, float]:
    """Park, measure RSS, write once, time until every poll has its answer."""
    _, headers, _ = await request(port, "GET", list_path)
    index = int(headers["x-nomad-index"])
    target = f"{list_path}?index={index}&wait={WAIT}"
    tasks = [asyncio.create_task(request(port, "GET", target)) for _ in range(polls)]
    await asyncio.sleep(PARK_SETTLE_S)
    if any(t.done() for t in tasks):
        raise RuntimeError("a poll answered before the write: not parked")
    parked_rss = status_kib(pid, "VmRSS") / 1024
    started = time.monotonic()
    await request(port, *write)
    results = await asyncio.wait_for(asyncio.gather(*tasks), PARK_TIMEOUT_S)
    wake_s = time.monotonic() - started
    bad = [r for r in results if r[0] != 200 or int(r[1]["x-nomad-index"]) <= index]
    if bad:
        raise RuntimeError(f"{len(bad)} polls answered without the new index")
    return parked_rss, wake_s


# -- the baseline server: a bare Starlette app with an asyncio.Condition -----------------


def baseline_server(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    state = {"index": 1}
    cond: asyncio.Condition | None = None

    def condition() -> asyncio.Condition:
        nonlocal cond
        if cond is None:
            cond = asyncio.Condition()
        return cond

    async def leader(request: Request) -> JSONResponse:
        return JSONResponse("127.0.0.1:4647")

    async def list_vars(request: Request) -> JSONResponse:
        min_index = int(request.query_params.get("index", "0"))
        c = condition()
        if min_index:
            async with c:
                try:
                    await asyncio.wait_for(c.wait_for(lambda: state["index"] > min_index), 60)
                except TimeoutError:
                    pass
        return JSONResponse([], headers={"X-Nomad-Index": str(state["index"])})

    async def bump(request: Request) -> JSONResponse:
        await request.body()
        c = condition()
        async with c:
            state["index"] += 1
            c.notify_all()
        return JSONResponse({}, headers={"X-Nomad-Index": str(state["index"])})

    app = Starlette(
        routes=[
            Route("/v1/status/leader", leader),
            Route("/v1/vars", list_vars),
            Route("/v1/var/{path:path}", bump, methods=["PUT"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port, proc)
    return proc


def measure(kind: str, polls: int, data_dir: Path) -> tuple[float, float, float]:
    port = free_port()
    if kind == "agent":
        argv = [sys.executable, "-m", "nomadpaas", "agent", "--dev", "--http-port", str(port),
                "--data-dir", str(data_dir)]  # fmt: skip
    else:
        argv = [sys.executable, __file__, "--baseline-server", str(port)]
    proc = start(argv, port)
    try:
        idle = status_kib(proc.pid, "VmRSS") / 1024
        body = json.dumps({"Items": {"k": "v"}}).encode()
        parked, wake = asyncio.run(
            run_round(port, proc.pid, polls, "/v1/vars", ("PUT", "/v1/var/bench", body))
        )
        return idle, parked, wake
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=1000)
    parser.add_argument("--baseline-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        baseline_server(args.baseline_server)
        return
    with tempfile.TemporaryDirectory(prefix="bench-bq-") as tmp:
        a_idle, a_rss, a_wake = measure("agent", args.polls, Path(tmp) / "agent")
        b_idle, b_rss, b_wake = measure("baseline", args.polls, Path(tmp) / "baseline")
    n = f"{args.polls:,}"
    print(f"parked long-polls: {n} (raw asyncio client, one write wakes them all)")
    print(f"  RSS idle:   agent {a_idle:.0f} MB vs bare Starlette {b_idle:.0f} MB "
          f"(ratio {a_idle / b_idle:.2f})")  # fmt: skip
    print(f"  RSS parked: agent {a_rss:.0f} MB vs bare Starlette {b_rss:.0f} MB "
          f"(ratio {a_rss / b_rss:.2f})")  # fmt: skip
    print(f"  wake-all:   agent {a_wake:.2f} s vs bare Starlette {b_wake:.2f} s "
          f"(ratio {a_wake / b_wake:.2f})")  # fmt: skip
    if os.environ.get("BENCH_JSON"):
        print(json.dumps({"agent": [a_idle, a_rss, a_wake], "baseline": [b_idle, b_rss, b_wake]}))


if __name__ == "__main__":
    main()
