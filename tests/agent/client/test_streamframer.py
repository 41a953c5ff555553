"""StreamFramer: 64 KiB frames, 200 ms batching, 1 s heartbeats, omitempty JSON."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import pytest

from nomadpaas.agent.client.lib.streamframer import (
    FILE_DELETED,
    FileEvent,
    LogChunk,
    StreamFrame,
    StreamFramer,
    frame_stream,
)

KIB = 1024


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def decode_stream(raw: bytes) -> list[dict[str, object]]:
    """Frames are JSON objects back to back with no separator."""
    decoder, body = json.JSONDecoder(), raw.decode()
    out, i = [], 0
    while i < len(body):
        obj, i = decoder.raw_decode(body, i)
        out.append(obj)
    return out


def test_frame_json_is_omitempty_and_heartbeat_is_empty_object() -> None:
    assert StreamFrame().encode() == b"{}"
    frame = StreamFrame(offset=5, data=b"hello", file="alloc/logs/web.stdout.0")
    assert json.loads(frame.encode()) == {
        "Offset": 5,
        "Data": base64.b64encode(b"hello").decode(),
        "File": "alloc/logs/web.stdout.0",
    }
    assert json.loads(StreamFrame(file="f", file_event=FILE_DELETED).encode()) == {
        "File": "f", "FileEvent": "file deleted"
    }  # fmt: skip


def test_small_writes_batch_until_200ms() -> None:
    clock = FakeClock()
    framer = StreamFramer(clock=clock)
    assert framer.send("f", b"ab", 2) == []
    clock.now += 0.1
    assert framer.send("f", b"cd", 4) == []
    assert framer.tick() == []
    clock.now += 0.125  # 225 ms after the first write
    frames = framer.tick()
    assert frames == [StreamFrame(offset=2, data=b"abcd", file="f")]  # Offset of first chunk


def test_busy_log_emits_64k_frames_at_once() -> None:
    clock = FakeClock()
    framer = StreamFramer(clock=clock)
    frames = framer.send("f", b"x" * (150 * KIB), 150 * KIB)
    assert [len(f.data) for f in frames] == [64 * KIB, 64 * KIB]
    rest = framer.flush()
    assert [len(f.data) for f in rest] == [22 * KIB]


def test_switching_file_flushes_the_pending_frame() -> None:
    framer = StreamFramer(clock=FakeClock())
    framer.send("a", b"1", 1)
    assert framer.send("b", b"2", 1) == [StreamFrame(1, b"1", "a")]
    assert framer.flush() == [StreamFrame(1, b"2", "b")]


def test_events_go_out_at_once_after_pending_data() -> None:
    framer = StreamFramer(clock=FakeClock())
    framer.send("a", b"1", 1)
    frames = framer.send("a", b"", 0, FILE_DELETED)
    assert frames == [StreamFrame(1, b"1", "a"), StreamFrame(0, b"", "a", FILE_DELETED)]


def test_heartbeat_every_second_even_while_data_flows() -> None:
    clock = FakeClock()
    framer = StreamFramer(clock=clock)
    heartbeats = 0
    for step in range(1, 25):  # 3 s of a write every 125 ms (exact in binary)
        clock.now += 0.125
        framer.send("f", b"x", step)
        heartbeats += sum(1 for f in framer.tick() if f.is_heartbeat())
    assert heartbeats == 3


def test_next_deadline_tracks_batch_and_heartbeat() -> None:
    clock = FakeClock()
    framer = StreamFramer(clock=clock)
    assert framer.next_deadline() == pytest.approx(101.0)
    framer.send("f", b"x", 1)
    assert framer.next_deadline() == pytest.approx(100.2)


async def _source(
    items: list[LogChunk | FileEvent], gap_s: float
) -> AsyncIterator[LogChunk | FileEvent]:
    for item in items:
        yield item
        await asyncio.sleep(gap_s)


def test_frame_stream_encodes_back_to_back_with_heartbeats() -> None:
    items: list[LogChunk | FileEvent] = [
        LogChunk("f", 1, b"a"),
        LogChunk("f", 2, b"b"),
        FileEvent("f", FILE_DELETED),
    ]

    async def run() -> bytes:
        framer = StreamFramer(batch_s=0.05, heartbeat_s=0.1)
        body = b""
        async for chunk in frame_stream(_source(items, 0.15), framer):
            body += chunk
        return body

    body = asyncio.run(asyncio.wait_for(run(), 30))
    frames = decode_stream(body)
    data = b"".join(base64.b64decode(str(f["Data"])) for f in frames if "Data" in f)
    assert data == b"ab"
    assert {"File": "f", "FileEvent": "file deleted"} in frames
    assert {} in frames  # at least one heartbeat over ~0.45 s
    assert b"}{" in body and b"\n" not in body


def test_frame_stream_reraises_source_errors() -> None:
    async def failing() -> AsyncIterator[LogChunk | FileEvent]:
        yield LogChunk("f", 1, b"a")
        raise OSError("disk gone")

    async def run() -> None:
        async for _ in frame_stream(failing()):
            pass

    with pytest.raises(OSError, match="disk gone"):
        asyncio.run(asyncio.wait_for(run(), 30))
