"""Benchmark: sequential variable PUT throughput on the agent (each write fsync'd before
it is acknowledged) against raw SQLite inserts with the same WAL + synchronous=FULL
durability, measured in the same run on the same filesystem.

    python bench/bench_variable_writes.py [--writes 300] [--max-seconds 20]
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from benchsupport import free_port

READY_TIMEOUT_S = 30.0


def agent_writes_per_s(data_dir: Path, writes: int, max_s: float) -> tuple[float, int]:
    port = free_port()
    argv = [sys.executable, "-m", "nomadpaas", "agent", "--dev", "--http-port", str(port),
            "--data-dir", str(data_dir)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=10) as http:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while True:
                try:
                    if http.get("/v1/status/leader").status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.05)
            http.put("/v1/var/warmup", json={"Items": {"k": "v"}}).raise_for_status()
            started = time.monotonic()
            done = 0
            while done < writes and time.monotonic() - started < max_s:
                r = http.put(f"/v1/var/bench/{done % 50}", json={"Items": {"n": str(done)}})
                r.raise_for_status()
                done += 1
            return done / (time.monotonic() - started), done
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def sqlite_writes_per_s(path: Path, writes: int, max_s: float) -> tuple[float, int]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE rows (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    value = '{"Items":{"n":"0"},"Namespace":"default","Path":"bench/0"}'
    started = time.monotonic()
    done = 0
    while done < writes and time.monotonic() - started < max_s:
        db.execute("BEGIN")
        db.execute("INSERT OR REPLACE INTO rows VALUES (?, ?)", (f"bench/{done % 50}", value))
        db.execute("COMMIT")
        done += 1
    elapsed = time.monotonic() - started
    db.close()
    return done / elapsed, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--max-seconds", type=float, default=20.0, help="per side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-vw-") as tmp:
        raw, raw_n = sqlite_writes_per_s(Path(tmp) / "raw.db", args.writes, args.max_seconds)
        agent, agent_n = agent_writes_per_s(Path(tmp) / "agent", args.writes, args.max_seconds)
    print(f"sequential durable writes (agent: {agent_n} PUT /v1/var; sqlite: {raw_n} commits)")
    print(f"variable writes: {agent:,.0f}/s vs raw sqlite {raw:,.0f}/s (ratio {agent / raw:.2f})")


if __name__ == "__main__":
    main()
