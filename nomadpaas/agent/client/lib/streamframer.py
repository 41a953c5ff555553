"""Batches file data into Nomad's JSON stream frames; mirrors client/lib/streamframer/framer.go.

A frame is `{"Offset":…,"Data":"<base64>","File":…,"FileEvent":…}` with every field
omitempty; frames go out back to back with no separator. Data for one file is batched
until 64 KiB accumulate or 200 ms pass; a switch of file or an event flushes first; a
heartbeat `{}` goes out every second whether or not data flows.

`StreamFramer` is the pure state machine (fed a clock, so it is unit-tested without
sleeping); `frame_stream` drives it from an async source of chunks and events.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

FRAME_SIZE_BYTES = 64 * 1024  # framer.go frameSize
BATCH_S = 0.2  # framer.go flushRate: pending data waits at most this long
HEARTBEAT_S = 1.0  # framer.go heartbeatRate: sent even while data flows
FILE_DELETED = "file deleted"
FILE_TRUNCATED = "file truncated"


@dataclass(frozen=True)
class StreamFrame:
    """One frame; the empty frame is the heartbeat."""

    offset: int = 0
    data: bytes = b""
    file: str = ""
    file_event: str = ""

    def is_heartbeat(self) -> bool:
        return not (self.offset or self.data or self.file or self.file_event)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.offset:
            out["Offset"] = self.offset
        if self.data:
            out["Data"] = base64.b64encode(self.data).decode("ascii")
        if self.file:
            out["File"] = self.file
        if self.file_event:
            out["FileEvent"] = self.file_event
        return out

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()


@dataclass(frozen=True)
class LogChunk:
    """Bytes read from `file` (alloc-relative); `offset` is the position just after them."""

    file: str
    offset: int
    data: bytes


@dataclass(frozen=True)
class FileEvent:
    """`file deleted` or `file truncated` for `file`."""

    file: str
    event: str


class StreamFramer:
    """The framing state machine. Every method returns the frames ready to send now."""

    def __init__(
        self,
        *,
        frame_size: int = FRAME_SIZE_BYTES,
        batch_s: float = BATCH_S,
        heartbeat_s: float = HEARTBEAT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.frame_size = frame_size
        self.batch_s = batch_s
        self.heartbeat_s = heartbeat_s
        self.clock = clock
        self._file = ""
        self._event = ""
        self._offset = 0
        self._data = bytearray()
        self._pending_since: float | None = None  # when the current frame got its first data
        self._next_heartbeat = clock() + heartbeat_s

    def send(self, file: str, data: bytes, offset: int, file_event: str = "") -> list[StreamFrame]:
        """Add `data` read from `file`, ending at `offset` (or an event with no data)."""
        out: list[StreamFrame] = []
        if self._pending_since is not None and (file != self._file or file_event != self._event):
            out += self.flush()
        if self._pending_since is None:
            self._file, self._event, self._offset = file, file_event, offset
            self._pending_since = self.clock()
        self._data += data
        # An event carries no data and must not wait for the batch timer.
        force = not self._data and bool(self._event)
        while len(self._data) >= self.frame_size or force:
            out.append(self._take())
            force = False
            if self._data:  # the rest starts a new frame at once
                self._pending_since = self.clock()
        return out

    def _take(self) -> StreamFrame:
        chunk = bytes(self._data[: self.frame_size])
        del self._data[: self.frame_size]
        frame = StreamFrame(self._offset, chunk, self._file, self._event)
        if not self._data:
            self._pending_since = None
        return frame

    def flush(self) -> list[StreamFrame]:
        """Send whatever is pending, in frames of at most `frame_size`."""
        out: list[StreamFrame] = []
        while self._pending_since is not None:
            out.append(self._take())
        return out

    def tick(self) -> list[StreamFrame]:
        """Frames due by the clock: the batched data after `batch_s`, then a heartbeat."""
        now = self.clock()
        out: list[StreamFrame] = []
        if self._pending_since is not None and now - self._pending_since >= self.batch_s:
            out += self.flush()
        if now >= self._next_heartbeat:
            out.append(StreamFrame())
            self._next_heartbeat = max(self._next_heartbeat + self.heartbeat_s, now)
        return out

    def next_deadline(self) -> float:
        """The clock time at which `tick` next has something to do."""
        if self._pending_since is None:
            return self._next_heartbeat
        return min(self._next_heartbeat, self._pending_since + self.batch_s)


_END = object()


@dataclass(frozen=True)
class _Failure:
    error: Exception


async def frame_stream(
    source: AsyncIterator[LogChunk | FileEvent],
    framer: StreamFramer | None = None,
    queue_size: int = 64,
) -> AsyncIterator[bytes]:
    """Encoded frames for an async source of chunks and events, heartbeats included.

    The source is consumed by a background task (so a slow source never delays a
    heartbeat); the stream ends with a final flush when the source is exhausted, and
    closing this generator cancels the consumer.
    """
    framer = framer or StreamFramer()
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=queue_size)

    async def pump() -> None:
        try:
            async for item in source:
                await queue.put(item)
        except Exception as exc:  # handed to the consumer, which re-raises it
            await queue.put(_Failure(exc))
            return
        await queue.put(_END)

    task = asyncio.create_task(pump())
    try:
        while True:
            timeout = max(0.0, framer.next_deadline() - framer.clock())
            try:
                item = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                item = None
            if item is _END or isinstance(item, _Failure):
                for frame in framer.flush():
                    yield frame.encode()
                if isinstance(item, _Failure):
                    raise item.error
                return
            frames: list[StreamFrame] = []
            if isinstance(item, LogChunk):
                frames += framer.send(item.file, item.data, item.offset)
            elif isinstance(item, FileEvent):
                frames += framer.send(item.file, b"", 0, item.event)
            frames += framer.tick()
            for frame in frames:
                yield frame.encode()
    finally:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
