"""Parallel gzip members: valid gzip, same bytes whatever the thread count."""

from __future__ import annotations

import gzip
import os
import random

import pytest
from testsupport import threads_started_from

from nomadpaas.slugbuilder import gzmember
from nomadpaas.slugbuilder.gzmember import CHUNK_BYTES, DeflatePool, GzipMember


def _member(data: bytes, pool: DeflatePool | None, piece: int) -> bytes:
    out: list[bytes] = []
    member = GzipMember(out.append, 6, pool)
    for i in range(0, len(data), piece):
        member.write(data[i : i + piece])
    member.close()
    return b"".join(out)


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES, CHUNK_BYTES + 1, 5 * CHUNK_BYTES + 123])
def test_same_bytes_with_any_threads_and_pieces(size: int) -> None:
    rng = random.Random(size)
    words = [bytes(rng.choices(b"abcdefgh", k=rng.randint(2, 9))) for _ in range(500)]
    data = b" ".join(rng.choices(words, k=size))[:size] if size else b""
    serial = _member(data, None, 4096)
    two, four = DeflatePool(2), DeflatePool(4)
    try:
        assert _member(data, two, 777) == serial
        assert _member(data, four, CHUNK_BYTES * 2) == serial
    finally:
        two.shutdown()
        four.shutdown()
    assert gzip.decompress(serial) == data
    if size > CHUNK_BYTES:  # priming with the previous 32 KiB keeps one stream's ratio
        assert len(serial) <= len(gzip.compress(data, 6, mtime=0)) * 1.01


def test_pool_starts_threads_on_demand_and_stops_them() -> None:
    package = os.path.dirname(gzmember.__file__)
    with threads_started_from(package) as started:
        pool = DeflatePool(3)
        assert started == []  # none before any work
        jobs = [pool.submit(bytes(1000), b"", 6, True) for _ in range(5)]
        assert all(job.result() == _serial_deflate(bytes(1000)) for job in jobs)
    assert 1 <= len(started) <= 3
    assert all(t.is_alive() for t in started)  # waiting for more work
    pool.shutdown()
    assert not any(t.is_alive() for t in started)


def test_pool_hands_a_failure_to_whoever_waits() -> None:
    pool = DeflatePool(2)
    try:
        job = pool.submit(b"data", b"", 99, True)  # zlib refuses level 99
        with pytest.raises(ValueError):
            job.result()
        assert job.done()
        assert pool.submit(b"data", b"", 6, True).result()  # the threads still work
    finally:
        pool.shutdown()


def _serial_deflate(data: bytes) -> bytes:
    out: list[bytes] = []
    member = GzipMember(out.append, 6, None)
    member.write(data)
    member.close()
    return b"".join(out)[10:-8]  # the raw deflate stream, without header and trailer
