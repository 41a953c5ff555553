"""Parallel gzip members: valid gzip, same bytes whatever the thread count."""

from __future__ import annotations

import gzip
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from nomadpaas.slugbuilder.gzmember import CHUNK_BYTES, GzipMember


def _member(data: bytes, pool: ThreadPoolExecutor | None, piece: int) -> bytes:
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
    with ThreadPoolExecutor(2) as two, ThreadPoolExecutor(4) as four:
        assert _member(data, two, 777) == serial
        assert _member(data, four, CHUNK_BYTES * 2) == serial
    assert gzip.decompress(serial) == data
    if size > CHUNK_BYTES:  # priming with the previous 32 KiB keeps one stream's ratio
        assert len(serial) <= len(gzip.compress(data, 6, mtime=0)) * 1.01
