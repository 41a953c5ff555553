"""Benchmark: event stream delivery latency — from a variable PUT being sent to each of
~20 `/v1/event/stream` subscribers receiving its line — against a baseline measured in
the same run on the same agent: the same writes observed by as many blocking queries
on `/v1/vars` (the way clients watched state before the event stream).

    python bench/bench_events.py [--writes 500] [--subscribers 20]

Writes are sequential (each waits for its acknowledgement). Latency of write i for one
watcher = (time the watcher first sees index >= i) - (time write i was sent). Prints
p50/p99 of both and their ratio. The client is raw asyncio sockets; the agent runs as
a child process on 127.0.0.1 with a throwaway data dir, killed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchsupport import agent_argv, free_port

READY_TIMEOUT_S = 30.0
ROUND_TIMEOUT_S = 300.0
SETTLE_S = 0.5  # after opening the watchers, before the first write


class Conn:
    """One keep-alive HTTP/1.1 connection (Content-Length or chunked bodies)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, method: str, target: str, body: bytes = b"") -> None:
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()

    async def head(self) -> tuple[int, dict[str, str]]:
        status = int((await self.reader.readline()).split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    async def body(self, headers: dict[str, str]) -> bytes:
        return await self.reader.readexactly(int(headers.get("content-length", "0")))

    async def chunk(self) -> bytes:
        """One chunk of a chunked body (the agent sends one NDJSON line per chunk)."""
        size = int((await self.reader.readline()).strip(), 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    def close(self) -> None:
        self.writer.close()


async def writer_loop(port: int, writes: int, sent: dict[int, float]) -> None:
    """PUT `writes` variables one after another; records each index's send time."""
    conn = await Conn.open(port)
    try:
        for i in range(writes):
            body = json.dumps({"Items": {"n": str(i)}}).encode()
            t0 = time.perf_counter()
            await conn.send("PUT", f"/v1/var/bench/v{i % 50}", body)
            status, headers = await conn.head()
            payload = await conn.body(headers)
            if status != 200:
                raise RuntimeError(f"PUT failed: {status} {payload!r}")
            sent[int(json.loads(payload)["ModifyIndex"])] = t0
    finally:
        conn.close()


async def stream_watcher(port: int, start: int, last: asyncio.Future[int]) -> dict[int, float]:
    """One event stream subscriber: the time each index's line arrived."""
    conn = await Conn.open(port)
    seen: dict[int, float] = {}
    try:
        await conn.send("GET", f"/v1/event/stream?index={start}&topic=Variable")
        status, _ = await conn.head()
        assert status == 200, status
        while True:
            line = await conn.chunk()
            now = time.perf_counter()
            msg = json.loads(line)
            if not msg:
                continue  # heartbeat
            seen.setdefault(int(msg["Index"]), now)
            if last.done() and max(seen) >= last.result():
                return seen
    finally:
        conn.close()


async def blocking_watcher(port: int, start: int, last: asyncio.Future[int]) -> dict[int, float]:
    """One blocking-query poller on /v1/vars: when each index first became visible."""
    conn = await Conn.open(port)
    seen: dict[int, float] = {}
    index = start - 1
    try:
        while True:
            await conn.send("GET", f"/v1/vars?prefix=bench/&index={index}&wait=60s")
            status, headers = await conn.head()
            await conn.body(headers)
            now = time.perf_counter()
            assert status == 200, status
            index = max(index, int(headers["x-nomad-index"]))
            seen.setdefault(index, now)
            if last.done() and index >= last.result():
                return seen
    finally:
        conn.close()


Watcher = Callable[[int, int, "asyncio.Future[int]"], Awaitable[dict[int, float]]]


async def run_round(port: int, watcher: Watcher, watchers: int, writes: int) -> list[float]:
    """Latencies in ms, one per (write, watcher)."""
    conn = await Conn.open(port)
    await conn.send("GET", "/v1/vars?prefix=bench/")
    _, headers = await conn.head()
    await conn.body(headers)
    conn.close()
    start = int(headers["x-nomad-index"]) + 1
    last: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    tasks = [asyncio.create_task(watcher(port, start, last)) for _ in range(watchers)]
    await asyncio.sleep(SETTLE_S)
    sent: dict[int, float] = {}
    await writer_loop(port, writes, sent)
    last.set_result(max(sent))
    await writer_loop(port, 1, {})  # wakes every watcher so it sees `last` and returns
    results = await asyncio.wait_for(asyncio.gather(*tasks), ROUND_TIMEOUT_S)
    latencies: list[float] = []
    for seen in results:
        marks = sorted(seen.items())
        for index, t_sent in sent.items():
            # The first observation at or past this index (blocking queries coalesce).
            t_seen = next(t for i, t in marks if i >= index)
            latencies.append((t_seen - t_sent) * 1000)
    return latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def start_agent(data_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = agent_argv(port, data_dir)
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("agent exited during startup")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise TimeoutError("agent did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--subscribers", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        proc, port = start_agent(Path(tmp) / "agent")
        try:
            time.sleep(1.0)  # let the client finish starting
            events = asyncio.run(run_round(port, stream_watcher, args.subscribers, args.writes))
            polls = asyncio.run(run_round(port, blocking_watcher, args.subscribers, args.writes))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
    print(f"{args.writes} sequential variable PUTs, {args.subscribers} watchers each")
    print(f"{'watcher':<28}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for name, lat in (("event stream", events), ("blocking query (baseline)", polls)):
        print(f"{name:<28}{pct(lat, 50):>10.2f}{pct(lat, 99):>10.2f}{statistics.mean(lat):>10.2f}")
    print(
        f"ratio event stream / baseline: p50 {pct(events, 50) / pct(polls, 50):.2f}x, "
        f"p99 {pct(events, 99) / pct(polls, 99):.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
