"""Shared by the benchmarks: free loopback ports, the agent's command line, a Popen baseline,
and a process's memory as /proc tells it.

Benchmarks run as scripts (`python bench/bench_x.py`), so this module is found next to them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from nomadpaas.stack import ports


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago, outside the ranges the kernel
    gives outgoing connections and Nomad gives tasks (a restarted server gets it back)."""
    return ports.free_port()


def agent_argv(port: int, data_dir: Path) -> list[str]:
    """`nomadpaas agent --dev` on loopback: HTTP on `port`, Consul on a free port."""
    return [
        sys.executable, "-m", "nomadpaas", "agent", "--dev", "--bind", "127.0.0.1",
        "--http-port", str(port), "--consul-port", str(free_port()),
        "--data-dir", str(data_dir),
    ]  # fmt: skip


def popen_sleepers(n: int) -> float:
    """Seconds to start `n` `sleep 300` processes straight from Python (the baseline)."""
    procs: list[subprocess.Popen[bytes]] = []
    t0 = time.monotonic()
    try:
        for _ in range(n):
            procs.append(
                subprocess.Popen(
                    ["sleep", "300"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        return time.monotonic() - t0
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def status_kib(pid: int, field: str) -> int:
    """A `/proc/<pid>/status` field in KiB (e.g. VmRSS, Threads: a count); 0 once gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int) -> int:
    """The process's proportional set size in KiB (shared pages split among users)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
