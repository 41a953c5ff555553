"""Measures log streaming throughput: LogFollower reads plus StreamFramer encoding.

Run: .venv/bin/python bench/bench_logs.py [MiB]   (default 64 MiB over 10 MiB rotated files)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from nomadpaas.agent.client.fs import LogFollower
from nomadpaas.agent.client.lib.streamframer import LogChunk, StreamFramer

MIB = 1024 * 1024
FILE_MIB = 10  # like logmon's default max_file_size


def main(total_mib: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "alloc/logs"
        logs.mkdir(parents=True)
        line = b"2026-01-01T00:00:00Z web.1 GET /healthz 200 0.42ms\n"
        per_file = FILE_MIB * MIB // len(line)
        n, written = 0, 0
        while written < total_mib * MIB:
            data = line * per_file
            (logs / f"web.stdout.{n}").write_bytes(data)
            written += len(data)
            n += 1
        framer = StreamFramer(clock=lambda: 0.0)  # no batching delays: pure CPU cost
        start = time.perf_counter()
        follower = LogFollower(Path(tmp), "web", "stdout")
        frames = encoded = 0
        while not follower.done:
            for item in follower.poll():
                if isinstance(item, LogChunk):
                    for frame in framer.send(item.file, item.data, item.offset):
                        encoded += len(frame.encode())
                        frames += 1
        for frame in framer.flush():
            encoded += len(frame.encode())
            frames += 1
        elapsed = time.perf_counter() - start
        print(
            f"{written / MIB:.0f} MiB in {n} files -> {frames} frames, {encoded / MIB:.0f} MiB "
            f"on the wire in {elapsed:.2f} s ({written / MIB / elapsed:.0f} MiB/s)"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 64)
