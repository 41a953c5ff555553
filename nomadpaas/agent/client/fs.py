"""Follows task logs and allocation files for streaming; mirrors client/fs_endpoint.go.

This is the logic behind `/v1/client/fs/logs/:alloc` and `/v1/client/fs/stream/:alloc`,
free of HTTP: the endpoint validates with `LogFollower`/`FileFollower` (errors carry the
HTTP code and must be answered before any byte is sent), then drains `follow_async`
into `frame_stream` or, for `plain=true`, sends the chunks' bytes as they are.

Logs live in `alloc/logs/<task>.<stdout|stderr>.<n>`; the highest `n` is the active
file. A follower keeps the current file open, so a file deleted by rotation is still
read to its end, and re-reads it once after seeing `n+1` appear, so the tail written
just before a rotation is not lost (Nomad issue #11653).

Following is event-driven where the kernel allows: `follow_async` sleeps on an inotify
subscription to the watched directory (`fswatch`), so a line logmon writes goes out within
a loop turn; the `POLL_S` poll stays as the backstop. A followed stream sends each read
as a frame at once (no 200 ms batching: the reads themselves batch whatever accumulated).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Collection, Iterator
from pathlib import Path
from typing import BinaryIO

from nomadpaas.agent.client import fswatch
from nomadpaas.agent.client.lib.streamframer import (
    FILE_DELETED,
    FILE_TRUNCATED,
    FileEvent,
    LogChunk,
    StreamFramer,
    frame_stream,
)

__all__ = [
    "FSError",
    "FileFollower",
    "LogFollower",
    "follow_async",
    "follow_sync",
    "stream_body",
]

LOGS_DIR = "alloc/logs"
POLL_S = 0.1  # how often a follower looks for growth, rotation and new files (backstop)
#: A followed stream's frames wait this long for more data: none, each read is a frame
#: (Nomad batches 200 ms; a follower reads what accumulated, so frames stay large).
FOLLOW_BATCH_S = 0.0
READ_CHUNK_BYTES = 64 * 1024  # one frame's worth
MAX_POLL_BYTES = 4 * 1024 * 1024  # per poll, so one busy file cannot starve heartbeats
LOG_TYPES = ("stdout", "stderr")
ORIGINS = ("start", "end")

Item = LogChunk | FileEvent


class FSError(Exception):
    """An fs endpoint error with Nomad's wording and the HTTP status to answer with."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class _OpenFile:
    """One open file and our position in it; detects truncation and deletion."""

    def __init__(self, path: Path, rel: str, offset: int) -> None:
        self.path = path
        self.rel = rel
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        self.f: BinaryIO = os.fdopen(fd, "rb")
        self.ino = os.fstat(fd).st_ino
        self.pos = max(0, min(offset, os.fstat(fd).st_size))
        self.f.seek(self.pos)

    def read(self, limit: int) -> LogChunk | None:
        data = self.f.read(limit)
        if not data:
            return None
        self.pos += len(data)
        return LogChunk(self.rel, self.pos, data)

    def truncated(self) -> bool:
        """At EOF: the file shrank below our position; we restart at 0, as Nomad does."""
        if os.fstat(self.f.fileno()).st_size >= self.pos:
            return False
        self.pos = 0
        self.f.seek(0)
        return True

    def deleted(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self.ino
        except FileNotFoundError:
            return True

    def close(self) -> None:
        self.f.close()


def validate_log_request(task: str, log_type: str, origin: str) -> None:
    """The 400s of the logs endpoint, in Nomad's order and words."""
    if not task:
        raise FSError("must provide task name", 400)
    if log_type not in LOG_TYPES:
        raise FSError("must provide log type (stdout/stderr)", 400)
    if origin not in ORIGINS:
        raise FSError("origin must be start or end", 400)


def log_indexes(alloc_dir: Path, task: str, log_type: str) -> dict[int, Path]:
    """`{n: path}` for every `alloc/logs/<task>.<type>.<n>` present now."""
    pattern = re.compile(re.escape(f"{task}.{log_type}.") + r"(\d+)")
    try:
        names = os.listdir(alloc_dir / LOGS_DIR)
    except FileNotFoundError:
        return {}
    found = {}
    for name in names:
        m = pattern.fullmatch(name)
        if m:
            found[int(m.group(1))] = alloc_dir / LOGS_DIR / name
    return found


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def find_start(files: dict[int, Path], origin: str, offset: int) -> tuple[int, int]:
    """(index, offset in that file) where reading starts; mirrors findClosest.

    origin=start: `offset` bytes into file 0, reaching into later files; origin=end:
    `offset` bytes before the end of the newest file, reaching back. Clamped at both ends.
    """
    order = sorted(files)
    if origin == "start":
        i, off = 0, max(0, offset)
        while off > _size(files[order[i]]) and i < len(order) - 1:
            off -= _size(files[order[i]])
            i += 1
        return order[i], min(off, _size(files[order[i]]))
    i = len(order) - 1
    off = _size(files[order[i]]) - max(0, offset)
    while off < 0 and i > 0:
        i -= 1
        off += _size(files[order[i]])
    return order[i], max(0, off)


class LogFollower:
    """Reads one task's stdout or stderr across rotated files; `poll()` never blocks."""

    def __init__(
        self,
        alloc_dir: Path,
        task: str,
        log_type: str,
        *,
        origin: str = "start",
        offset: int = 0,
        follow: bool = False,
        task_names: Collection[str] | None = None,
        task_started: bool = True,
    ) -> None:
        """Validate and open the first file; raises FSError (400/404) like Nomad."""
        validate_log_request(task, log_type, origin)
        if task_names is not None and task not in task_names:
            raise FSError(f'unknown task name "{task}"', 400)
        if not task_started:
            raise FSError(f'task "{task}" not started yet. No logs available', 404)
        self.alloc_dir = alloc_dir
        self.task = task
        self.log_type = log_type
        self.follow = follow
        self.done = False
        files = log_indexes(alloc_dir, task, log_type)
        if not files:
            raise FSError(f'log entry for task "{task}" and log type "{log_type}" not found', 404)
        self.last_at_start = max(files)  # without follow, the stream ends after this file
        self.index, start = find_start(files, origin, offset)
        self.current: _OpenFile | None = None
        self._open(self.index, start)

    def _rel(self, index: int) -> str:
        return f"{LOGS_DIR}/{self.task}.{self.log_type}.{index}"

    def watch_target(self) -> tuple[Path, str]:
        """(directory, name prefix) whose changes may bring this follower new bytes."""
        return self.alloc_dir / LOGS_DIR, f"{self.task}.{self.log_type}."

    def _open(self, index: int, offset: int) -> bool:
        self.index = index
        path = self.alloc_dir / self._rel(index)
        try:
            self.current = _OpenFile(path, self._rel(index), offset)
        except FileNotFoundError:
            self.current = None
            return False
        return True

    def _next_index(self) -> int | None:
        later = [n for n in log_indexes(self.alloc_dir, self.task, self.log_type) if n > self.index]
        return min(later) if later else None

    def poll(self, max_bytes: int = MAX_POLL_BYTES) -> list[Item]:
        """Everything readable now (up to `max_bytes`); sets `done` when the stream ends."""
        out: list[Item] = []
        budget = max_bytes
        for _ in range(10_000):  # bounded: every pass reads, switches file or returns
            if self.done or budget <= 0:
                break
            cur = self.current
            if cur is None:  # the file we wanted vanished: wait for a later one
                nxt = self._next_index()
                if nxt is None:
                    self.done = not self.follow
                    break
                self._open(nxt, 0)
                continue
            chunk = cur.read(min(READ_CHUNK_BYTES, budget))
            if chunk is not None:
                out.append(chunk)
                budget -= len(chunk.data)
                continue
            if cur.truncated():
                out.append(FileEvent(cur.rel, FILE_TRUNCATED))
                continue
            if not self._advance(cur, out):
                break
        return out

    def _advance(self, cur: _OpenFile, out: list[Item]) -> bool:
        """At EOF of `cur`: move on to a later file if there is one; False means wait."""
        nxt = self._next_index()
        if not self.follow and (self.index >= self.last_at_start or nxt is None):
            self.done = True
            cur.close()
            return False
        if cur.deleted():
            out.append(FileEvent(cur.rel, FILE_DELETED))
        elif nxt is None:
            return False  # the active file: wait for growth
        else:
            tail = cur.read(READ_CHUNK_BYTES)  # written just before the rotation
            if tail is not None:
                out.append(tail)
                return True
        cur.close()
        self.current = None
        if nxt is not None:
            self._open(nxt, 0)
        return True

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None
        self.done = True


def resolve_alloc_path(alloc_dir: Path, rel: str) -> Path:
    """`alloc_dir/rel`, refused if it leaves the allocation dir, lexically or via symlinks."""
    root = os.path.realpath(alloc_dir)
    joined = os.path.normpath(os.path.join(root, rel.lstrip("/")))
    real = os.path.realpath(joined)
    for candidate in (joined, real):
        if candidate != root and not candidate.startswith(root + os.sep):
            raise FSError("Path escapes the alloc directory", 400)
    return Path(joined)


class FileFollower:
    """Reads one allocation file from an offset, optionally following growth."""

    def __init__(
        self, alloc_dir: Path, path: str, *, offset: int = 0, origin: str = "start",
        follow: bool = True,
    ) -> None:  # fmt: skip
        if origin not in ORIGINS:
            raise FSError("origin must be start or end", 400)
        if not path:
            raise FSError("must provide a file path", 400)
        full = resolve_alloc_path(alloc_dir, path)
        if full.is_dir():
            raise FSError(f'file "{path}" is a directory', 400)
        start = offset if origin == "start" else _size(full) - offset
        try:
            self.current = _OpenFile(full, path.lstrip("/"), start)
        except FileNotFoundError:
            raise FSError(f"stat {path}: no such file or directory", 404) from None
        self.follow = follow
        self.done = False

    def watch_target(self) -> tuple[Path, str]:
        """(directory, name prefix) whose changes may bring this follower new bytes."""
        return self.current.path.parent, self.current.path.name

    def poll(self, max_bytes: int = MAX_POLL_BYTES) -> list[Item]:
        out: list[Item] = []
        cur = self.current
        while not self.done and max_bytes > 0:
            chunk = cur.read(min(READ_CHUNK_BYTES, max_bytes))
            if chunk is not None:
                out.append(chunk)
                max_bytes -= len(chunk.data)
            elif cur.truncated():
                out.append(FileEvent(cur.rel, FILE_TRUNCATED))
            elif cur.deleted():
                out.append(FileEvent(cur.rel, FILE_DELETED))
                self.close()
            else:
                if not self.follow:
                    self.close()
                break
        return out

    def close(self) -> None:
        self.current.close()
        self.done = True


Follower = LogFollower | FileFollower


def follow_sync(
    follower: Follower, *, poll_s: float = POLL_S, timeout_s: float = 3600.0
) -> Iterator[Item]:
    """Chunks and events until the follower is done or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    try:
        while not follower.done and time.monotonic() < deadline:
            items = follower.poll()
            yield from items
            if not items and not follower.done:
                time.sleep(poll_s)
    finally:
        follower.close()


async def follow_async(follower: Follower, *, poll_s: float = POLL_S) -> AsyncIterator[Item]:
    """Chunks and events until the follower is done; the client disconnecting ends it.

    A following follower waits for an inotify change of its directory (at most `poll_s`)
    between reads; the subscription is cleared *before* each read, so a write landing
    during the read wakes the next wait at once and nothing waits for the backstop.
    """
    watch = fswatch.subscribe(*follower.watch_target()) if follower.follow else None
    try:
        while not follower.done:
            if watch is not None:
                watch.clear()
            items = await asyncio.to_thread(follower.poll)
            for item in items:
                yield item
            if not items and not follower.done:
                if watch is not None:
                    await watch.wait(poll_s)
                else:
                    await asyncio.sleep(poll_s)
    finally:
        if watch is not None:
            watch.close()
        follower.close()


async def stream_body(
    follower: Follower, *, plain: bool, poll_s: float = POLL_S
) -> AsyncIterator[bytes]:
    """The response body: raw bytes with `plain`, else JSON frames with heartbeats."""
    source = follow_async(follower, poll_s=poll_s)
    if plain:
        async for item in source:
            if isinstance(item, LogChunk):
                yield item.data
        return
    framer = StreamFramer(batch_s=FOLLOW_BATCH_S) if follower.follow else None
    async for frame in frame_stream(source, framer):
        yield frame
