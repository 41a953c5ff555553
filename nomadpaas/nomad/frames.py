"""Decode Nomad's stream frames incrementally; mirrors api/fs.go's FrameReader side.

`/v1/client/fs/logs/:alloc` (plain=false) answers with JSON objects written back to back,
no separator (nomad-api.md §5): ``{"Offset":65536,"Data":"<base64>","File":"..."}``.
Heartbeats are ``{}``; `FileEvent` frames (`file deleted`, `file truncated`) carry no
data. HTTP chunks split frames anywhere, so the decoder buffers until an object is
complete.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from nomadpaas.errors import NomadPaasError

__all__ = ["FrameDecoder", "StreamFrame", "decode_frames"]

#: A single frame holds at most 64 KiB of data, so ~88 KiB base64 plus keys; a buffer
#: far beyond that means the server is not sending frames at all.
MAX_PENDING_BYTES = 4 * 1024 * 1024

_WHITESPACE = " \t\r\n"


@dataclass(frozen=True)
class StreamFrame:
    """One decoded frame: `data` bytes (empty for heartbeats and file events)."""

    data: bytes = b""
    offset: int = 0
    file: str = ""
    file_event: str = ""

    @property
    def is_heartbeat(self) -> bool:
        return not self.data and not self.file_event and not self.file


class FrameDecoder:
    """Feed it HTTP chunks; it yields every frame completed so far.

    Usage::

        decoder = FrameDecoder()
        for chunk in response.iter_bytes():
            for frame in decoder.feed(chunk):
                sys.stdout.buffer.write(frame.data)
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._pending = b""  # bytes of an incomplete UTF-8 sequence
        self._json = json.JSONDecoder()

    def feed(self, chunk: bytes) -> list[StreamFrame]:
        """Add `chunk`; return the frames it completed (possibly none)."""
        data = self._pending + chunk
        # Frames are ASCII JSON, but a chunk may end inside a multi-byte character of a
        # FileEvent or path; keep the incomplete tail for the next chunk.
        text, self._pending = _split_utf8(data)
        self._buffer += text
        frames: list[StreamFrame] = []
        position = 0
        buffer = self._buffer
        while True:
            while position < len(buffer) and buffer[position] in _WHITESPACE:
                position += 1
            if position >= len(buffer):
                break
            try:
                obj, end = self._json.raw_decode(buffer, position)
            except json.JSONDecodeError:
                break  # incomplete: wait for more bytes
            position = end
            frames.append(_frame(obj))
        self._buffer = buffer[position:]
        if len(self._buffer) > MAX_PENDING_BYTES:
            raise NomadPaasError(
                "The log stream from Nomad is not a stream of JSON frames "
                f"({len(self._buffer)} bytes without a complete frame)."
            )
        return frames

    @property
    def leftover(self) -> str:
        """Bytes received after the last complete frame (empty at a clean end)."""
        return self._buffer


def decode_frames(chunks: Iterable[bytes]) -> Iterator[StreamFrame]:
    """Every frame in a chunked body (heartbeats included)."""
    decoder = FrameDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)


def _split_utf8(data: bytes) -> tuple[str, bytes]:
    for cut in range(0, min(4, len(data)) + 1):
        head = data[: len(data) - cut] if cut else data
        try:
            return head.decode("utf-8"), data[len(head) :]
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", errors="replace"), b""


def _frame(obj: object) -> StreamFrame:
    if not isinstance(obj, dict):
        raise NomadPaasError(f"The log stream from Nomad sent {obj!r}, not a frame object.")
    raw = obj.get("Data") or ""
    try:
        data = base64.b64decode(raw, validate=True) if raw else b""
    except (binascii.Error, ValueError, TypeError) as exc:
        raise NomadPaasError(f"A log frame from Nomad has invalid base64 Data: {exc}") from exc
    return StreamFrame(
        data=data,
        offset=int(obj.get("Offset") or 0),
        file=str(obj.get("File") or ""),
        file_event=str(obj.get("FileEvent") or ""),
    )
