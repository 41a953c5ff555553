"""A followed log is event-driven: a line written (by `splice`, as logmon writes) after the
follow started reaches the reader without waiting out any polling interval, and a
followed framed stream sends it at once instead of batching it for 200 ms."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from nomadpaas.agent.client import fswatch
from nomadpaas.agent.client.fs import FileFollower, LogFollower, follow_async, stream_body
from nomadpaas.agent.client.lib.streamframer import BATCH_S, LogChunk

LOGS = "alloc/logs"
#: The backstop poll in these tests: far longer than any wait they allow.
NEVER_S = 30.0
#: How late a line may arrive on a loaded 2-core machine (a poll would take NEVER_S).
LATE_S = 3.0

pytestmark = pytest.mark.skipif(fswatch._libc is None, reason="no inotify here")


def splice_line(path: Path, line: bytes) -> None:
    """Append `line` through a pipe with splice(2), the way logmon moves task output."""
    r, w = os.pipe()
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(w, line)
        os.splice(r, fd, len(line), offset_dst=os.fstat(fd).st_size)
    finally:
        for f in (r, w, fd):
            os.close(f)


def logs(tmp_path: Path) -> Path:
    (tmp_path / LOGS).mkdir(parents=True)
    path = tmp_path / LOGS / "build.stdout.0"
    path.write_bytes(b"first\n")
    return path


Arrivals = asyncio.Queue[tuple[float, bytes]]


async def _timed(consume: Callable[[Arrivals], Awaitable[None]], path: Path, n: int) -> list[float]:
    """Seconds from each of `n` late writes to `path` until `consume` (run as its own task,
    so the follower really is asleep when a line is written) puts its bytes in the queue,
    after the file's first line."""
    arrived: Arrivals = asyncio.Queue()
    reader = asyncio.create_task(consume(arrived))
    latencies: list[float] = []
    try:
        _, first = await asyncio.wait_for(arrived.get(), LATE_S)
        assert first == b"first\n"
        for i in range(n):
            await asyncio.sleep(0.05)  # the follower reads, finds nothing, and waits
            written = time.monotonic()
            splice_line(path, f"line {i}\n".encode())
            at, data = await asyncio.wait_for(arrived.get(), LATE_S)
            assert data == f"line {i}\n".encode()
            latencies.append(at - written)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return latencies


async def _timed_items(follower: LogFollower | FileFollower, path: Path, n: int) -> list[float]:
    """`_timed` for the chunks of `follow_async`."""

    async def consume(arrived: Arrivals) -> None:
        async for item in follow_async(follower, poll_s=NEVER_S):
            if isinstance(item, LogChunk):
                await arrived.put((time.monotonic(), item.data))

    return await _timed(consume, path, n)


def test_a_line_written_after_the_follow_started_arrives_without_a_poll(tmp_path: Path) -> None:
    path = logs(tmp_path)
    follower = LogFollower(tmp_path, "build", "stdout", follow=True)
    latencies = asyncio.run(_timed_items(follower, path, 5))
    # A poll would have taken NEVER_S each time; the best of five is well under 50 ms.
    assert max(latencies) < LATE_S
    assert min(latencies) < 0.05


def test_a_write_to_another_stream_does_not_wake_the_follower(tmp_path: Path) -> None:
    path = logs(tmp_path)
    (tmp_path / LOGS / "build.stderr.0").write_bytes(b"")

    async def run() -> bool:
        sub = fswatch.subscribe(tmp_path / LOGS, "build.stdout.")
        assert sub is not None
        try:
            splice_line(tmp_path / LOGS / "build.stderr.0", b"noise\n")
            woke_for_stderr = await sub.wait(0.2)
            splice_line(path, b"news\n")
            woke_for_stdout = await sub.wait(LATE_S)
        finally:
            sub.close()
        return not woke_for_stderr and woke_for_stdout

    assert asyncio.run(run())


def test_a_followed_file_wakes_its_follower_too(tmp_path: Path) -> None:
    path = tmp_path / "alloc" / "data.txt"
    path.parent.mkdir()
    path.write_bytes(b"first\n")
    follower = FileFollower(tmp_path, "alloc/data.txt", follow=True)
    latencies = asyncio.run(_timed_items(follower, path, 3))
    assert max(latencies) < LATE_S


def test_a_followed_framed_stream_sends_each_read_at_once(tmp_path: Path) -> None:
    path = logs(tmp_path)
    follower = LogFollower(tmp_path, "build", "stdout", follow=True)

    async def consume(arrived: Arrivals) -> None:
        decoder, buffer = json.JSONDecoder(), ""
        async for part in stream_body(follower, plain=False, poll_s=NEVER_S):
            buffer += part.decode()
            while buffer:
                frame, end = decoder.raw_decode(buffer)
                buffer = buffer[end:]
                if frame.get("Data"):
                    await arrived.put((time.monotonic(), base64.b64decode(frame["Data"])))

    latencies = asyncio.run(_timed(consume, path, 5))
    # Batched, no frame could leave before BATCH_S (200 ms) had passed.
    assert min(latencies) < BATCH_S / 2


def test_subscriptions_share_one_descriptor_and_release_it(tmp_path: Path) -> None:
    logs(tmp_path)

    async def run() -> tuple[int, int]:
        a = fswatch.subscribe(tmp_path / LOGS, "build.stdout.")
        b = fswatch.subscribe(tmp_path / LOGS, "build.stderr.")
        assert a is not None and b is not None
        shared = len(fswatch._watchers)
        a.close()
        b.close()
        return shared, len(fswatch._watchers)

    assert asyncio.run(run()) == (1, 0)
