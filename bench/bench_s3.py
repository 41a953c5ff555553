"""What durability costs: the embedded S3 server against plain moto and a local fsync'ed write.

Run: .venv/bin/python bench/bench_s3.py   (about a minute; loopback only)

Both servers run as child processes on random loopback ports in the same run, so the
ratios hold on a noisy machine even when the absolute numbers do not. The second table is
the small requests of a push, one at a time: milliseconds per request as the client sees
them and as the server's CPU (user + system, from /proc) pays them, medians of rounds
that alternate between the two servers.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from testsupport import free_port, wait_http

from nomadpaas.storage.s3 import S3Storage

BIG_BYTES = 32 * 1024 * 1024  # multipart (4 parts of 8 MiB)
SMALL_BYTES = 4 * 1024  # a build record
SMALL_COUNT = 200
RUNS = 3
SLUG_BYTES = 1024 * 1024  # what a build uploads and the platform promotes (CopyObject)
REQUESTS_PER_ROUND = 100  # the CPU column resolves clock ticks (10 ms) over these: 0.1 ms
REQUEST_ROUNDS = 5


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


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used; 0 where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def presigned(method: str, url: str, body: bytes = b"", if_none_match: str = "") -> int:
    """One request to a presigned URL on its own connection, as the build task sends it."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        headers = {"Connection": "close"} | (
            {"If-None-Match": if_none_match} if if_none_match else {}
        )
        conn.request(method, f"{parts.path}?{parts.query}", body=body or None, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def small_requests(url: str) -> dict[str, Callable[[str], object]]:
    """Each request kind of a push, as a function of a tag naming the key it writes."""
    store = S3Storage(url, "small", access_key_id="k", secret_access_key="s", region="us-east-1")
    store.ensure_bucket()
    record, slug = os.urandom(SMALL_BYTES), os.urandom(SLUG_BYTES)
    store.put_bytes("fixed/record", record)
    store.put_bytes("fixed/slug", slug)
    etag, slug_md5 = f'"{hashlib.md5(record).hexdigest()}"', hashlib.md5(slug).hexdigest()

    def expect(want: int, status: int) -> None:
        if status != want:
            raise RuntimeError(f"{url} answered {status}, not {want}")

    def put_record(tag: str) -> None:
        expect(200, presigned("PUT", store.presign_put(f"rec/{tag}"), record))

    def put_slug(tag: str) -> None:
        expect(200, presigned("PUT", store.presign_put(f"slug/{tag}"), slug))

    def get_unchanged(tag: str) -> None:
        expect(304, presigned("GET", store.presign_get("fixed/record"), if_none_match=etag))

    return {
        "PUT 4 KiB (presigned)": put_record,
        "PUT 1 MiB (presigned)": put_slug,
        "GET If-None-Match 304": get_unchanged,
        "GET 4 KiB": lambda tag: store.get_bytes("fixed/record"),
        "HEAD": lambda tag: store.head("fixed/slug"),
        "CopyObject 1 MiB": lambda tag: store.copy("fixed/slug", f"copy/{tag}", if_match=slug_md5),
        "DeleteObject": lambda tag: store.delete(f"rec/{tag}"),  # what PUT 4 KiB wrote
    }


def per_request(servers: list[tuple[str, int]]) -> dict[str, list[tuple[float, float]]]:
    """Per request kind, each server's (median ms per request, median server CPU ms)."""
    kinds = [small_requests(url) for url, _ in servers]
    samples: dict[str, list[tuple[list[float], list[float]]]] = {
        name: [([], []) for _ in servers] for name in kinds[0]
    }
    for rnd in range(REQUEST_ROUNDS):
        order = list(range(len(servers)))
        if rnd % 2:
            order.reverse()  # neither server always goes first
        for name in samples:
            for s in order:
                fn, pid = kinds[s][name], servers[s][1]
                t0, c0 = time.perf_counter(), cpu_s(pid)
                for i in range(REQUESTS_PER_ROUND):
                    fn(f"{rnd}-{i}")
                wall, cpu = time.perf_counter() - t0, cpu_s(pid) - c0
                samples[name][s][0].append(wall * 1000 / REQUESTS_PER_ROUND)
                samples[name][s][1].append(cpu * 1000 / REQUESTS_PER_ROUND)
    return {
        name: [(statistics.median(w), statistics.median(c)) for w, c in per_server]
        for name, per_server in samples.items()
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
            small = per_request(
                [(f"http://127.0.0.1:{ports[0]}", durable.pid),
                 (f"http://127.0.0.1:{ports[1]}", plain.pid)]
            )  # fmt: skip
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
        print()
        print(
            f"{'per request (ms)':<22} {'durable':>8} {'plain':>7} {'CPU durable':>12} {'plain':>6}"
        )
        for name, ((dw, dc), (pw, pc)) in small.items():
            print(f"{name:<22} {dw:>8.2f} {pw:>7.2f} {dc:>12.2f} {pc:>6.2f}")


if __name__ == "__main__":
    main()
