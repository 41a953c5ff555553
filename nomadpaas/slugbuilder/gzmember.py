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
import threading
import zlib
from _queue import SimpleQueue
from collections import deque
from collections.abc import Callable

__all__ = ["CHUNK_BYTES", "DeflatePool", "GzipMember", "deflate_pool", "deflate_workers"]

#: Uncompressed bytes deflated as one piece (pigz's default block size).
CHUNK_BYTES = 128 * 1024
#: Deflate's window: each chunk is primed with this much of the data before it.
_WINDOW_BYTES = 32 * 1024
#: At most this many threads deflate at once (more give little on a build machine).
MAX_WORKERS = 4
#: Chunks in flight before the writer waits (bounds memory to ~1 MiB of input).
_MAX_PENDING = 8


class _Job:
    """One chunk's deflate: `result` waits for it (and re-raises what it raised)."""

    __slots__ = ("_args", "_done", "_error", "_value")

    def __init__(self, args: tuple[bytes, bytes, int, bool]) -> None:
        self._args = args
        self._done = threading.Event()
        self._value = b""
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._value = _deflate(*self._args)
        except BaseException as exc:  # handed to whoever waits for the result
            self._error = exc
        finally:
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self) -> bytes:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


class DeflatePool:
    """Threads that deflate chunks, started on demand up to `workers`.

    Not concurrent.futures: its import pulls in `logging` and more, milliseconds of the
    build task's start, for what a queue and a few threads do here. Threads start when
    there is work for them, so they run with the scheduling of the thread that submits
    (the build task lowers it once the build's result is stored).
    """

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, chunk: bytes, primer: bytes, level: int, last: bool) -> _Job:
        job = _Job((chunk, primer, level, last))
        self._queue.put(job)
        if len(self._threads) < self._workers:
            thread = threading.Thread(target=self._work, name="deflate", daemon=True)
            thread.start()
            self._threads.append(thread)
        return job

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            job.run()

    def shutdown(self) -> None:
        """Stop the threads once the queued chunks are done; wait for them."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()


def deflate_pool() -> DeflatePool | None:
    """A pool for `GzipMember`, or None when this process may use only one CPU."""
    workers = deflate_workers()
    return DeflatePool(workers) if workers > 1 else None


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
        self, sink: Callable[[bytes], object], level: int, pool: DeflatePool | None = None
    ) -> None:
        self._sink = sink
        self._level = level
        self._pool = pool
        self._pending: deque[_Job] = deque()
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
        self._pending.append(self._pool.submit(chunk, primer, self._level, last))
        while len(self._pending) > _MAX_PENDING or (self._pending and self._pending[0].done()):
            self._sink(self._pending.popleft().result())
