"""Benchmark: a canary deployment of a 3-instance service, from `register` to `successful`.

Starts a real agent, deploys v0 (3 × a Python HTTP server with an HTTP check, `checks`
health), then registers updates with `canary = 3, auto_promote`. For each update it
prints the time from register to `successful` against the sum of the configured waits
(`min_healthy_time` + one check interval) and the agent's own overhead as a percentage
of those waits (goal < 20 %). Cleans up the agent and its tasks.

    .venv/bin/python bench/bench_deployments.py                 # 3 updates, mht 5 s
    .venv/bin/python bench/bench_deployments.py --updates 2 --min-healthy 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from benchsupport import agent_argv, free_port

from nomadpaas.agent.drivers.rawexec.driver import kill_orphaned_tasks

S = 1_000_000_000
CHECK_INTERVAL_S = 1.0
COUNT = 3
TIMEOUT_S = 60.0
SERVER_CODE = """
import http.server, os
port = int(os.environ["NOMAD_PORT_http"])
http.server.ThreadingHTTPServer(
    ("127.0.0.1", port), http.server.SimpleHTTPRequestHandler
).serve_forever()
"""


def job(release: str, min_healthy_s: float) -> dict[str, Any]:
    check = {"Type": "http", "Path": "/", "Interval": int(CHECK_INTERVAL_S * S), "Timeout": S}
    return {
        "ID": "bench",
        "Type": "service",
        "Update": {
            "MaxParallel": COUNT,
            "HealthCheck": "checks",
            "MinHealthyTime": int(min_healthy_s * S),
            "HealthyDeadline": 30 * S,
            "ProgressDeadline": 60 * S,
            "Canary": COUNT,
            "AutoPromote": True,
        },
        "TaskGroups": [
            {
                "Name": "web",
                "Count": COUNT,
                "Networks": [{"DynamicPorts": [{"Label": "http"}]}],
                "Services": [{"Name": "bench", "PortLabel": "http", "Checks": [check]}],
                "Tasks": [
                    {
                        "Name": "srv",
                        "Driver": "raw_exec",
                        "Env": {"RELEASE": release},
                        "KillTimeout": S,
                        "Config": {"command": sys.executable, "args": ["-u", "-c", SERVER_CODE]},
                    }
                ],
            }
        ],
    }


def wait_ready(http: httpx.Client, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("agent exited during startup")
        try:
            if http.get("/v1/status/leader").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit("agent did not start")


def deploy(http: httpx.Client, release: str, version: int, min_healthy_s: float) -> float:
    """Register one version; seconds until its deployment is `successful`."""
    started = time.monotonic()
    http.post("/v1/jobs", json={"Job": job(release, min_healthy_s)}).raise_for_status()
    deadline = started + TIMEOUT_S
    index = 0
    while time.monotonic() < deadline:
        r = http.get("/v1/job/bench/deployments", params={"index": index, "wait": "2s"})
        index = int(r.headers.get("X-Nomad-Index", "0"))
        for d in r.json():
            if d["JobVersion"] != version:
                continue
            if d["Status"] == "successful":
                return time.monotonic() - started
            if d["Status"] in ("failed", "cancelled"):
                raise SystemExit(f"v{version}: {d['Status']}: {d['StatusDescription']}")
    raise SystemExit(f"v{version}: not successful after {TIMEOUT_S}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--min-healthy", type=float, default=5.0, help="min_healthy_time, s")
    args = parser.parse_args()
    waits = args.min_healthy + CHECK_INTERVAL_S
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        data_dir = Path(tmp) / "agent"
        port = free_port()
        argv = agent_argv(port, data_dir)
        with open(Path(tmp) / "agent.log", "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        try:
            wait_ready(http, proc)
            first = deploy(http, "v0", 0, args.min_healthy)
            print(f"v0 (first run, {COUNT} allocs, no canaries): {first:.2f}s")
            print(f"configured waits per update: min_healthy_time {args.min_healthy:g}s")
            print(f"  + check interval {CHECK_INTERVAL_S:g}s = {waits:g}s")
            overheads = []
            for v in range(1, args.updates + 1):
                elapsed = deploy(http, f"v{v}", v, args.min_healthy)
                overhead = (elapsed - waits) / waits * 100
                overheads.append(overhead)
                print(
                    f"v{v} canary={COUNT} auto_promote: register → successful {elapsed:.2f}s, "
                    f"overhead {elapsed - waits:.2f}s = {overhead:.1f}%"
                )
            print(
                f"median overhead {statistics.median(overheads):.1f}% "
                f"(goal < 20%) over {len(overheads)} updates"
            )
        finally:
            http.close()
            proc.kill()
            proc.wait(10)
            kill_orphaned_tasks(str(data_dir))


if __name__ == "__main__":
    main()
