"""Benchmark (issue 3): log throughput through a real agent to a `logs -f` reader.

Starts `nomadpaas agent --dev` with a temporary data dir and runs a batch task that prints
numbered lines as fast as it can for a few seconds, then `END <n>`. An httpx reader follows
`/v1/client/fs/logs/<alloc>?type=stdout&follow=true&plain=true` from the start while the
task prints and reports lines/s received, checking that nothing was lost (every number, in
order). It then reads the same log again framed (`plain=false`, base64 JSON frames: the
replay cost) and times `cat` of the log files on disk, as the ceiling.

    .venv/bin/python bench/bench_log_follow.py              # prints for 3 s
    .venv/bin/python bench/bench_log_follow.py --seconds 1
    .venv/bin/python bench/bench_log_follow.py --seq 5000000   # `seq`: faster than any reader
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from benchsupport import agent_argv, free_port

from nomadpaas.agent.drivers.rawexec.driver import kill_orphaned_tasks

TIMEOUT_S = 180.0
POLL_S = 0.1
# Prints 1..n as fast as Python can (block-buffered), then `END n`; waits 1 s first so the
# reader is already following when the output starts.
PRINTER = """
import sys, time
time.sleep(1)
w, end, i = sys.stdout.write, time.monotonic() + {seconds}, 0
while time.monotonic() < end:
    for _ in range(1000):
        i += 1
        w(f"{{i}}\\n")
w(f"END {{i}}\\n")
"""


def job(seconds: float, seq: int) -> dict[str, Any]:
    if seq:  # `seq` outpaces any reader: measures the pipeline, not the printer
        script = f"sleep 1; seq 1 {seq}; echo END {seq}"
        config = {"command": "/bin/sh", "args": ["-c", script]}
    else:
        config = {"command": sys.executable, "args": ["-c", PRINTER.format(seconds=seconds)]}
    return {
        "ID": "printer",
        "Type": "batch",
        "TaskGroups": [
            {
                "Name": "run",
                "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
                "Tasks": [
                    {
                        "Name": "main",
                        "Driver": "raw_exec",
                        "Config": config,
                        # Big files, so nothing rotates away before `cat` reads it.
                        "LogConfig": {"MaxFiles": 2, "MaxFileSizeMB": 100},
                    }
                ],
            }
        ],
    }


def check_lines(data: bytes, what: str) -> int:
    """Every number 1..n in order followed by `END n`; returns n."""
    lines = data.split(b"\n")
    assert lines[-1] == b"", f"{what}: output does not end with a newline"
    last = lines[-2]
    assert last.startswith(b"END "), f"{what}: no END line"
    n = int(last.split()[1])
    if lines[:-2] != [str(i).encode() for i in range(1, n + 1)]:
        raise SystemExit(f"{what}: lines lost or out of order")
    return n


def follow_plain(http: httpx.Client, url: str, deadline: float) -> tuple[bytes, float]:
    """Follow from the start until the END line; returns (bytes, seconds from first byte)."""
    params = {"task": "main", "type": "stdout", "follow": "true", "plain": "true"}
    data = bytearray()
    first = 0.0
    with http.stream("GET", url, params=params, timeout=30) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            if not first:
                first = time.monotonic()
            data += chunk
            tail = data[-64:]
            if b"END " in tail and tail.endswith(b"\n"):
                break
            if time.monotonic() > deadline:
                raise SystemExit("timed out following the log")
    return bytes(data), time.monotonic() - first


def follow_framed(http: httpx.Client, url: str, deadline: float) -> tuple[bytes, float]:
    """The same log as JSON frames (base64 data), from the start until the END line."""
    params = {"task": "main", "type": "stdout", "follow": "true"}
    decoder, buf, data = json.JSONDecoder(), "", bytearray()
    t0 = time.monotonic()
    with http.stream("GET", url, params=params, timeout=30) as r:
        r.raise_for_status()
        for text in r.iter_text():
            buf += text
            pos = 0
            while pos < len(buf):
                try:
                    frame, pos = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError:
                    break
                data += base64.b64decode(frame.get("Data", ""))
            buf = buf[pos:]
            tail = data[-64:]
            if b"END " in tail and tail.endswith(b"\n"):
                break
            if time.monotonic() > deadline:
                raise SystemExit("timed out following the framed log")
    return bytes(data), time.monotonic() - t0


def run(seconds: float, seq: int, data_dir: Path, log: Path, deadline: float) -> None:
    port = free_port()
    argv = agent_argv(port, data_dir)
    with open(log, "ab") as out:
        agent = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        while not _answers(http, agent):
            if time.monotonic() > deadline:
                raise SystemExit("agent did not come up")
            time.sleep(POLL_S)
        http.post("/v1/jobs", json={"Job": job(seconds, seq)}).raise_for_status()
        url = ""
        while not url:
            allocs = http.get("/v1/job/printer/allocations").json()
            running = [a for a in allocs if a["ClientStatus"] in ("running", "complete")]
            if running:
                candidate = f"/v1/client/fs/logs/{running[0]['ID']}"
                probe = {"task": "main", "type": "stdout", "plain": "true"}
                if http.get(candidate, params=probe).status_code == 200:
                    url = candidate
            if time.monotonic() > deadline:
                raise SystemExit("task did not start")
            time.sleep(POLL_S)

        data, took = follow_plain(http, url, deadline)
        n = check_lines(data, "logs -f")
        mib = len(data) / 2**20
        print(f"logs -f (plain, live): {n} lines, {mib:.1f} MiB in {took:.2f}s: "
              f"{n / took:,.0f} lines/s, {mib / took:.1f} MiB/s, nothing lost")  # fmt: skip

        framed, took = follow_framed(http, url, deadline)
        assert check_lines(framed, "framed") == n
        print(f"logs -f (framed, replay): {n / took:,.0f} lines/s, {mib / took:.1f} MiB/s")

        alloc_id = url.rsplit("/", 1)[1]
        files = sorted(
            (data_dir / "alloc" / alloc_id / "alloc" / "logs").glob("main.stdout.*"),
            key=lambda p: int(p.suffix[1:]),
        )
        t0 = time.monotonic()
        cat = subprocess.run(["cat", *map(str, files)], capture_output=True, check=True)
        took = time.monotonic() - t0
        assert check_lines(cat.stdout, "cat") == n
        print(f"cat of {len(files)} log file(s): {n / took:,.0f} lines/s, {mib / took:.1f} MiB/s")
    finally:
        http.close()
        if agent.poll() is None:
            agent.send_signal(signal.SIGKILL)
            agent.wait(timeout=15)
        kill_orphaned_tasks(str(data_dir))


def _answers(http: httpx.Client, agent: subprocess.Popen[bytes]) -> bool:
    if agent.poll() is not None:
        raise SystemExit(f"agent exited with {agent.returncode}")
    try:
        return http.get("/v1/status/leader", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="printing time (default 3)")
    parser.add_argument("--seq", type=int, default=0, help="print 1..SEQ with `seq` instead")
    args = parser.parse_args()
    deadline = time.monotonic() + TIMEOUT_S
    tmp = Path(tempfile.mkdtemp(prefix="bench-log-follow-"))
    try:
        run(args.seconds, args.seq, tmp / "data", tmp / "agent.log", deadline)
    finally:
        kill_orphaned_tasks(str(tmp / "data"))
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
