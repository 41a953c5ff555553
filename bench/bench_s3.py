"""What durability costs: the embedded S3 server against plain moto and a local fsync'ed write.

Run: .venv/bin/python bench/bench_s3.py   (about a minute; loopback only)

Both servers run as child processes on random loopback ports in the same run, so the
ratios hold on a noisy machine even when the absolute numbers do not.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from testsupport import free_port, wait_http

from nomadpaas.storage.s3 import S3Storage

BIG_BYTES = 32 * 1024 * 1024  # multipart (4 parts of 8 MiB)
SMALL_BYTES = 4 * 1024  # a build record
SMALL_COUNT = 200
RUNS = 3


def median_s(fn: Callable[[], None], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def start(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/", timeout=30, proc=proc)
    return proc


def measure(url: str, src: Path, tmp: Path) -> dict[str, float]:
    store = S3Storage(url, "bench", access_key_id="k", secret_access_key="s", region="us-east-1")
    store.ensure_bucket()
    small = os.urandom(SMALL_BYTES)

    def puts() -> None:
        for i in range(SMALL_COUNT):
            store.put_bytes(f"builds/app/{i}.json", small)

    return {
        "upload 32 MiB": median_s(lambda: store.put_file("slugs/app/big.tar.gz", src)),
        "download 32 MiB": median_s(lambda: store.get_file("slugs/app/big.tar.gz", tmp / "dl")),
        f"{SMALL_COUNT} x 4 KiB PUT": median_s(puts),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        src = tmp / "big"
        src.write_bytes(os.urandom(BIG_BYTES))

        def local_write() -> None:
            with open(tmp / "local", "wb") as f:
                f.write(src.read_bytes())
                f.flush()
                os.fsync(f.fileno())

        baseline = median_s(local_write)
        ports = free_port(), free_port()
        durable = start(
            [sys.executable, "-m", "nomadpaas.stack.s3server", "--bind", "127.0.0.1",
             "--port", str(ports[0]), "--data-dir", str(tmp / "s3")],
            ports[0],
        )  # fmt: skip
        plain = start(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(ports[1])],
            ports[1],
        )
        try:
            d_res = measure(f"http://127.0.0.1:{ports[0]}", src, tmp)
            p_res = measure(f"http://127.0.0.1:{ports[1]}", src, tmp)
        finally:
            for proc in (durable, plain):
                proc.kill()
                proc.wait(timeout=10)
        print(f"local write+fsync 32 MiB: {baseline:.3f} s (baseline)")
        print(f"{'operation':<20} {'durable':>9} {'plain moto':>11} {'durable/plain':>14}")
        for name, dur in d_res.items():
            pl = p_res[name]
            print(f"{name:<20} {dur:>8.3f}s {pl:>10.3f}s {dur / pl:>13.2f}x")
        up = d_res["upload 32 MiB"]
        print(f"durable upload / local write+fsync: {up / baseline:.1f}x")


if __name__ == "__main__":
    main()
