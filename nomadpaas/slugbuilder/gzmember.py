"""Write one gzip member (RFC 1952) at a time, deflating its chunks on several threads.

A gzip file may hold several members and decompresses to their concatenation (RFC 1952
§2.2); Python's gzip and tarfile, GNU gzip/tar and Go's compress/gzip (go-getter) all
read such files as one stream. That is what lets a slug reuse the compressed bytes of an
unchanged part (see `layers`).

Inside a member the data is deflated in fixed 128 KiB chunks the way pigz does it: each
chunk is compressed on its own (zlib releases the GIL, so chunks run in parallel),
primed with the 32 KiB before it as dictionary so the ratio stays that of one stream,
and ended with a sync flush so the pieces join into one valid deflate stream. The
chunking depends only on the data, never on the number of threads, so the same bytes
always give the same member (a cached layer equals a fresh one on any machine).
Header: no name, mtime 0, OS 255 (unknown), as ``gzip.compress(data, level, mtime=0)``.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["CHUNK_BYTES", "GzipMember", "deflate_pool", "deflate_workers"]

#: Uncompressed bytes deflated as one piece (pigz's default block size).
CHUNK_BYTES = 128 * 1024
#: Deflate's window: each chunk is primed with this much of the data before it.
_WINDOW_BYTES = 32 * 1024
#: At most this many threads deflate at once (more give little on a build machine).
MAX_WORKERS = 4
#: Chunks in flight before the writer waits (bounds memory to ~1 MiB of input).
_MAX_PENDING = 8


def deflate_pool() -> ThreadPoolExecutor | None:
    """A pool for `GzipMember`, or None when this process may use only one CPU."""
    workers = deflate_workers()
    return ThreadPoolExecutor(workers, thread_name_prefix="deflate") if workers > 1 else None


def deflate_workers() -> int:
    """Threads worth using here: the CPUs this process may run on, at most MAX_WORKERS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


def _deflate(chunk: bytes, primer: bytes, level: int, last: bool) -> bytes:
    if primer:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=primer)
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(chunk) + compressor.flush(
        zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH
    )


class GzipMember:
    """Compresses what is written to it into `sink` as one gzip member; `close` ends it.

    `pool` runs the chunks' deflate; None deflates them on the caller's thread (same
    bytes either way).
    """

    def __init__(
        self, sink: Callable[[bytes], object], level: int, pool: ThreadPoolExecutor | None = None
    ) -> None:
        self._sink = sink
        self._level = level
        self._pool = pool
        self._pending: deque[Future[bytes]] = deque()
        self._buffer = bytearray()
        self._primer = b""
        self._crc = 0
        self._size = 0
        extra_flags = 2 if level == 9 else 4 if level == 1 else 0  # as Python's gzip
        sink(b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes((extra_flags, 255)))

    def write(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._buffer += data
        while len(self._buffer) > CHUNK_BYTES:  # keep the last chunk for close()
            chunk = bytes(self._buffer[:CHUNK_BYTES])
            del self._buffer[:CHUNK_BYTES]
            self._submit(chunk, last=False)

    def close(self) -> None:
        self._submit(bytes(self._buffer), last=True)
        self._buffer.clear()
        while self._pending:
            self._sink(self._pending.popleft().result())
        self._sink(struct.pack("<LL", self._crc, self._size & 0xFFFFFFFF))

    def _submit(self, chunk: bytes, *, last: bool) -> None:
        primer, self._primer = self._primer, chunk[-_WINDOW_BYTES:]
        if self._pool is None or (last and not self._pending):  # small: no thread needed
            self._sink(_deflate(chunk, primer, self._level, last))
            return
        self._pending.append(self._pool.submit(_deflate, chunk, primer, self._level, last))
        while len(self._pending) > _MAX_PENDING or (self._pending and self._pending[0].done()):
            self._sink(self._pending.popleft().result())
