"""Benchmark (issue 3): N trivial allocations through a real agent process, register → running.

Each round first times N `sleep 300` started directly with subprocess.Popen (the baseline),
then starts `nomadpaas agent --dev` with a fresh data dir, registers ONE raw_exec service job
whose group has Count N (`sleep 300`, small resources, no deployment) and times register → all
N `running` (blocking queries on /v1/job/:id/summary). The verdict is the median of the rounds'
ratios: one round on a shared machine can be off by a third either way. With the N tasks of
the last round up it reports the agent's RSS (goal ≤ 150 MB) and the per-task overhead beyond
the task: RSS and PSS of every process in each task's tree except the `sleep` itself (goal ≤
2 MB each). Every round stops the job, checks that every task process is gone, and kills the
agent; orphans are killed as a last resort.

    .venv/bin/python bench/bench_agent_allocs.py            # N = 1000, 3 rounds
    .venv/bin/python bench/bench_agent_allocs.py --n 100 --rounds 1
    .venv/bin/python bench/bench_agent_allocs.py --tmp /dev/shm   # no disk: fs latency out

Each allocation's directory tree (16 inodes: 10 dirs, 3 FIFOs, 3 files; see alloc_dirs_alone)
is most of the cost on a slow disk: the run prints how long the trees alone take there.

Each round also says how busy the machine was between register and running, and how its
CPU time split between the agent and the task side (the spawner, every executor and every
task; a task's own start-up, its exec, is most of that and the baseline pays it too). When
the machine is close to fully busy, only less work, not better scheduling, shortens the run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from benchsupport import agent_argv, free_port, popen_sleepers, pss_kib, status_kib

from nomadpaas.agent.drivers.rawexec.driver import kill_orphaned_tasks, wrapper_state_dir

KIB_PER_MIB = 1024
TIMEOUT_S = 240.0  # the whole run must stay under 5 minutes
POLL_S = 0.2
ROUND_PAUSE_S = 3.0
RATIO_GOAL = 2.0
AGENT_RSS_GOAL_MIB = 150.0
PER_TASK_GOAL_MIB = 2.0
JOB_ID = "bench"


def processes() -> dict[int, tuple[int, list[bytes]]]:
    """Every live process: pid → (ppid, argv)."""
    out: dict[int, tuple[int, list[bytes]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        fields = raw[raw.rindex(b")") + 2 :].split()
        if fields[0] not in (b"Z", b"X"):
            out[int(entry)] = (int(fields[1]), argv)
    return out


def task_trees(
    data_dir: Path, procs: dict[int, tuple[int, list[bytes]]] | None = None
) -> tuple[list[int], list[int]]:
    """(overhead pids, task pids): each raw_exec wrapper of this data dir and its descendants,
    split into the `sleep` tasks themselves and everything else (the per-task overhead).
    `procs`: a `processes()` the caller read already."""
    procs = processes() if procs is None else procs
    root = str(data_dir.resolve()) + os.sep
    tops = [
        pid
        for pid, (_, argv) in procs.items()
        if (state := wrapper_state_dir(argv)) is not None
        and os.path.realpath(state).startswith(root)
    ]
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    overhead: list[int] = []
    tasks: list[int] = []
    stack = list(tops)
    while stack:
        pid = stack.pop()
        argv = procs[pid][1]
        is_task = os.path.basename(argv[0]) == b"sleep"
        (tasks if is_task else overhead).append(pid)
        stack.extend(children.get(pid, []))
    return overhead, tasks


def cpu_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by ``pid`` (its threads included)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2 :].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs so far, from /proc/stat (idle and iowait are
    not busy)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def on_cpu_s(pids: list[int]) -> float:
    """Seconds on a CPU so far of every process in `pids` (schedstat: nanoseconds, exact
    for short-lived work that tick-based /proc/<pid>/stat rounds to nothing)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # gone meanwhile
    return total / 1e9


def task_side(agent_pid: int, data_dir: Path) -> list[int]:
    """The processes that start and hold the tasks: the agent's spawner (its child), every
    executor and every task."""
    procs = processes()
    overhead, tasks = task_trees(data_dir, procs)
    spawners = [pid for pid, (ppid, _) in procs.items() if ppid == agent_pid]
    return overhead + tasks + spawners


def wait(pred: Any, what: str, deadline: float) -> float:
    started = time.monotonic()
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(POLL_S)
    return time.monotonic() - started


def job(n: int) -> dict[str, Any]:
    return {
        "ID": JOB_ID,
        "Type": "service",
        "Update": {"MaxParallel": 0},  # no deployment: nothing waits on health
        "TaskGroups": [
            {
                "Name": "app",
                "Count": n,
                "EphemeralDisk": {"SizeMB": 10},
                "Tasks": [
                    {
                        "Name": "t",
                        "Driver": "raw_exec",
                        "Config": {"command": "sleep", "args": ["300"]},
                        "Resources": {"CPU": 1, "MemoryMB": 10},
                        # Log storage must fit in the (small) ephemeral disk: 2 × 1 MB < 10 MB.
                        "LogConfig": {"MaxFiles": 2, "MaxFileSizeMB": 1},
                    }
                ],
            }
        ],
    }


def wait_summary(http: httpx.Client, key: str, n: int, deadline: float) -> None:
    """Until the summary's `key` count is `n`, with blocking queries: the answer comes the
    moment the summary changes, so the measured time is not rounded up to a poll period."""
    index = 0
    while True:
        reply = http.get(f"/v1/job/{JOB_ID}/summary", params={"index": index, "wait": "5s"})
        reply.raise_for_status()
        if reply.json()["Summary"]["app"][key] == n:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {n} {key}")
        index = int(reply.headers.get("X-Nomad-Index", index))


def stages(allocs: list[dict[str, Any]], wall0: int) -> str:
    """When the allocations passed each stage, from the agent's own timestamps (seconds
    after register: first / median / last): placed by the scheduler (CreateTime), taken by the
    client (`Received`), task started (`Started`), known running to the server (ModifyTime).
    Where a slow start goes shows as the stage whose last arrival jumps."""
    marks: dict[str, list[int]] = {"placed": [], "received": [], "started": [], "reported": []}
    for alloc in allocs:
        marks["placed"].append(alloc["CreateTime"])
        marks["reported"].append(alloc["ModifyTime"])
        for state in (alloc.get("TaskStates") or {}).values():
            for event in state.get("Events") or []:
                if event["Type"] in ("Received", "Started"):
                    marks[event["Type"].lower()].append(event["Time"])
    parts = []
    for name, times in marks.items():
        if times:
            times.sort()
            first, median, last = times[0], times[len(times) // 2], times[-1]
            parts.append("/".join(f"{(t - wall0) / 1e9:.2f}" for t in (first, median, last)))
            parts[-1] = f"{name} {parts[-1]}"
    return ", ".join(parts) + " s (first/median/last)"


def alloc_dirs_alone(n: int, where: Path) -> float:
    """Seconds to create `n` allocation directory trees under `where` with plain system
    calls, no process and no agent: the 16 inodes the agent creates per allocation (Nomad's
    layout, nomad-api.md §9: 10 dirs, 2 log files, 2 log FIFOs, the executor's pid file and
    ack FIFO). On a file system where creating inodes is slow, this alone sets a floor under
    the agent's ratio; the trees are left for the caller to delete after the agent's run, so
    their deletion does not slow it (see FACTS: a journal-less ext4 skips recently deleted
    inodes one by one when allocating)."""
    t0 = time.monotonic()
    for i in range(n):
        root = where / f"alloc-{i}"
        for d in ("", "alloc", "alloc/logs", "alloc/tmp", "alloc/data",
                  "t", "t/local", "t/secrets", "t/tmp", "t/private"):  # fmt: skip
            os.mkdir(root / d)
        for f in ("alloc/logs/t.stdout.0", "alloc/logs/t.stderr.0", "t/private/task.pid"):
            os.close(os.open(root / f, os.O_CREAT | os.O_WRONLY, 0o644))
        for f in ("alloc/logs/.t.stdout.fifo", "alloc/logs/.t.stderr.fifo", "t/private/task.ack"):
            os.mkfifo(root / f, 0o600)
    return time.monotonic() - t0


def run(n: int, rounds: int, tmp: Path, deadline: float) -> None:
    ratios = []
    for i in range(rounds):
        if i:
            time.sleep(ROUND_PAUSE_S)  # the last round's 2N processes are reaped, not racing
        popen_s = popen_sleepers(n)
        print(f"round {i + 1}: baseline {n} x Popen(sleep 300) in {popen_s:.2f}s")
        if i == 0:
            floor = tmp / "fs-floor"
            floor.mkdir()
            floor_s = alloc_dirs_alone(n, floor)
            print(f"file system: {n} allocation dir trees alone (16 inodes each, no "
                  f"process) in {floor_s:.2f}s = {floor_s / popen_s:.1f}x Popen "
                  "(the data dir's fs)")  # fmt: skip
        # Each round's data dir is kept until the end: deleting a thousand trees just before
        # the next round would slow its mkdirs on ext4 (see alloc_dirs_alone).
        data_dir = tmp / f"data-{i}"
        agent_s, work_s = run_agent(n, data_dir, tmp / "agent.log", deadline, last=i == rounds - 1)
        ratios.append(agent_s / popen_s)
        # The same CPU work with every CPU busy all along: no scheduling does better.
        floor = work_s / (os.cpu_count() or 1) / popen_s
        print(f"round {i + 1}: ratio {ratios[-1]:.2f}x (that CPU work on every CPU at once: "
              f"{floor:.2f}x)")  # fmt: skip
    ratio = statistics.median(ratios)
    each = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"ratio:    {ratio:.2f}x median of {rounds} round(s) ({each}) (goal ≤ {RATIO_GOAL:.0f}x) "
          f"{_verdict(ratio <= RATIO_GOAL)}")  # fmt: skip


def run_agent(
    n: int, data_dir: Path, log: Path, deadline: float, *, last: bool
) -> tuple[float, float]:
    """One agent's register → running of `n` allocations: its seconds, and the CPU seconds
    the agent and the task side spent meanwhile; with `last`, its RSS and the per-task
    overhead are reported too."""
    port = free_port()
    argv = agent_argv(port, data_dir)
    with open(log, "ab") as out:
        agent = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        wait(lambda: _answers(http, agent), "agent up", deadline)
        rss_idle = status_kib(agent.pid, "VmRSS") / KIB_PER_MIB
        cpu0 = cpu_s(agent.pid)
        side0 = on_cpu_s(task_side(agent.pid, data_dir))  # the spawner, if up already
        machine0 = machine_jiffies()
        wall0 = time.time_ns()
        t0 = time.monotonic()
        reply = http.post("/v1/jobs", json={"Job": job(n)})
        if reply.status_code != 200:
            raise SystemExit(f"register failed: {reply.status_code} {reply.text}")
        wait_summary(http, "Running", n, deadline)
        agent_s = time.monotonic() - t0
        cpu1 = cpu_s(agent.pid)
        machine1 = machine_jiffies()
        print(f"agent:    {n} allocations register → running in {agent_s:.2f}s "
              f"({agent_s / n * 1000:.1f} ms/alloc)")  # fmt: skip
        user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        print(f"agent CPU meanwhile: user {user:.2f}s, system {system:.2f}s "
              f"(load average {os.getloadavg()[0]:.2f})")  # fmt: skip
        busy = (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1])
        side = on_cpu_s(task_side(agent.pid, data_dir)) - side0
        print(f"machine:  {busy:.0%} of {os.cpu_count()} CPUs busy meanwhile: the agent "
              f"{user + system:.2f} CPU-s, the task side (spawner, executors, tasks) "
              f"{side:.2f} ({side / n * 1000:.2f} ms per task)")  # fmt: skip
        print(f"stages:   {stages(http.get(f'/v1/job/{JOB_ID}/allocations').json(), wall0)}")
        if last:
            footprint(n, agent, rss_idle, data_dir)

        t0 = time.monotonic()
        http.delete(f"/v1/job/{JOB_ID}").raise_for_status()
        wait_summary(http, "Complete", n, deadline)
        wait(lambda: task_trees(data_dir) == ([], []), "task processes gone", deadline)
        print(f"stop:     {n} allocations stopped, every process gone, in "
              f"{time.monotonic() - t0:.2f}s")  # fmt: skip
        return agent_s, user + system + side
    finally:
        http.close()
        if agent.poll() is None:
            agent.send_signal(signal.SIGKILL)
            agent.wait(timeout=15)
        left = kill_orphaned_tasks(str(data_dir))
        if left:
            print(f"WARNING: killed {left} orphaned tasks")


def footprint(n: int, agent: subprocess.Popen[bytes], rss_idle: float, data_dir: Path) -> None:
    """The agent's RSS and each task's overhead processes' RSS and PSS, with `n` tasks up."""
    time.sleep(1.0)  # let wrappers and logmon settle at their steady state
    rss = status_kib(agent.pid, "VmRSS") / KIB_PER_MIB
    threads = status_kib(agent.pid, "Threads")
    print(f"agent RSS: {rss:.1f} MiB with {n} allocations (idle {rss_idle:.1f} MiB, "
          f"{threads} threads) goal ≤ {AGENT_RSS_GOAL_MIB:.0f} MB "
          f"{_verdict(rss <= AGENT_RSS_GOAL_MIB)}")  # fmt: skip
    overhead, tasks = task_trees(data_dir)
    rss_each = sum(status_kib(p, "VmRSS") for p in overhead) / n / KIB_PER_MIB
    pss_each = sum(pss_kib(p) for p in overhead) / n / KIB_PER_MIB
    ok = pss_each <= PER_TASK_GOAL_MIB
    print(f"per task: {len(overhead)} overhead processes for {len(tasks)} tasks; "
          f"RSS {rss_each:.2f} MiB, PSS {pss_each:.2f} MiB each beyond the task "
          f"(goal ≤ {PER_TASK_GOAL_MIB:.0f} MB) {_verdict(ok)}")  # fmt: skip
    if len(tasks) != n:
        print(f"WARNING: found {len(tasks)} sleep tasks, expected {n}")


def _answers(http: httpx.Client, agent: subprocess.Popen[bytes]) -> bool:
    if agent.poll() is not None:
        raise SystemExit(f"agent exited with {agent.returncode}")
    try:
        return http.get("/v1/status/leader", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="allocations (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median counts (3)")
    parser.add_argument(
        "--tmp", default=None, help="where the data dir goes (default: $TMPDIR); try /dev/shm"
    )
    args = parser.parse_args()
    deadline = time.monotonic() + TIMEOUT_S
    tmp = Path(tempfile.mkdtemp(prefix="bench-agent-allocs-", dir=args.tmp))
    print(f"data dir under {tmp}")
    try:
        run(args.n, max(1, args.rounds), tmp, deadline)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
