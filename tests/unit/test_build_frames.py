"""Nomad's framed log stream decoded incrementally, across any chunk boundaries."""

from __future__ import annotations

import base64
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nomadpaas.errors import NomadPaasError
from nomadpaas.nomad.frames import FrameDecoder, StreamFrame, decode_frames


def body(parts: list[bytes], heartbeat_every: int = 2) -> bytes:
    out = b"{}"
    offset = 0
    for i, part in enumerate(parts):
        offset += len(part)
        frame = {
            "Offset": offset,
            "Data": base64.b64encode(part).decode(),
            "File": "alloc/logs/build.stdout.0",
        }
        out += json.dumps(frame).encode()
        if i % heartbeat_every == 0:
            out += b"{}"
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
def test_any_chunking_gives_the_same_frames(parts: list[bytes], cuts: list[int]) -> None:
    raw = body(parts)
    frames = list(decode_frames(split(raw, cuts)))
    data = [f.data for f in frames if not f.is_heartbeat]
    assert data == parts
    assert sum(f.is_heartbeat for f in frames) == 1 + (len(parts) + 1) // 2


def test_one_byte_at_a_time_and_file_events() -> None:
    raw = body([b"hello ", "wörld\n".encode()]) + b'{"File":"x","FileEvent":"file truncated"}'
    decoder = FrameDecoder()
    frames: list[StreamFrame] = []
    for i in range(len(raw)):
        frames += decoder.feed(raw[i : i + 1])
    assert b"".join(f.data for f in frames).decode() == "hello wörld\n"
    assert frames[-1].file_event == "file truncated" and not frames[-1].data
    assert decoder.leftover == ""
    assert [f.offset for f in frames if f.data] == [6, 13]


def test_garbage_is_an_error_not_a_hang() -> None:
    with pytest.raises(NomadPaasError):
        list(decode_frames([b"[1,2]"]))
    with pytest.raises(NomadPaasError):
        list(decode_frames([b'{"Data":"***"}']))


def test_lines_are_reassembled_across_frames_and_utf8_splits() -> None:
    from nomadpaas.buildwatch import LineSplitter as _Lines

    seen: list[str] = []
    lines = _Lines(seen.append, keep=2)
    text = "-----> Étape 1\r\nsecond\nthird without newline".encode()
    for i in range(0, len(text), 3):
        lines.feed(text[i : i + 3])
    assert seen == ["-----> Étape 1", "second"]
    lines.flush()
    assert seen[-1] == "third without newline" and lines.tail == ["second", seen[-1]]
