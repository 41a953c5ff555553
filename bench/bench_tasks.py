"""Benchmark: N raw_exec tasks (executor + FIFO logging) against N bare subprocess.Popen.

Prints start-time ratio, the driver process's RSS growth, and the per-task overhead (the
executors' RSS and PSS divided by N). It runs the driver twice, with the native executor
(executor.c, whose processes one spawner forks) and with the sh wrapper it falls back to
without a C compiler, and prints the driver-start time of one against the other, and the CPU
a start costs in the driver's process, the executor and the spawner. Cleans up everything it
started, whatever happens.

    .venv/bin/python bench/bench_tasks.py            # N = 1000
    .venv/bin/python bench/bench_tasks.py --n 100
    .venv/bin/python bench/bench_tasks.py --no-sh    # the native executor only
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time

from benchsupport import popen_sleepers, pss_kib, status_kib

from nomadpaas.agent.client.allocdir import AllocDir
from nomadpaas.agent.client.logmon.logmon import LogMon, LogmonConfig
from nomadpaas.agent.drivers.base import TaskConfig, TaskHandle
from nomadpaas.agent.drivers.rawexec.driver import RawExecDriver
from nomadpaas.agent.drivers.rawexec.spawner import spawner_for

KIB = 1024


def cpu_ms(pid: int) -> float:
    """CPU milliseconds ``pid`` has run so far (schedstat: nanoseconds, not 10 ms ticks);
    0 once it is gone."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:
            return int(f.read().split()[0]) / 1e6
    except OSError:
        return 0.0


def bench_driver(n: int, data_dir: str, *, native: bool = True) -> dict[str, float]:
    rss_before = status_kib(os.getpid(), "VmRSS")
    logmon = LogMon()
    driver = RawExecDriver(native_executor=native)
    spawner = spawner_for(driver.executor) if driver.executor is not None else None
    spawner_cpu0 = cpu_ms(spawner.pid) if spawner is not None and spawner.pid else 0.0
    driver_cpu = 0.0
    # One allocation per task, as the agent would have (one log dir per allocation).
    allocs = [AllocDir(data_dir, f"alloc-{i}") for i in range(n)]
    handles: list[TaskHandle] = []
    out: dict[str, float] = {}
    try:
        phase = {"build": 0.0, "logmon": 0.0, "driver": 0.0}
        t0 = time.monotonic()
        for i, alloc in enumerate(allocs):
            name = f"t{i}"
            tp = time.perf_counter()
            td = alloc.build(["web"])["web"]
            phase["build"] += time.perf_counter() - tp
            tp = time.perf_counter()
            logmon.start(
                name,
                LogmonConfig(
                    td.log_dir,
                    "web.stdout",
                    "web.stderr",
                    td.stdout_fifo,
                    td.stderr_fifo,
                ),
            )
            phase["logmon"] += time.perf_counter() - tp
            tp = time.perf_counter()
            cp = time.process_time()
            handles.append(
                driver.start_task(
                    TaskConfig(
                        id=name,
                        alloc_id=alloc.alloc_id,
                        name=name,
                        command="sleep",
                        args=("300",),
                        env=dict(os.environ),
                        task_dir=td.dir,
                        stdout_path=td.stdout_fifo,
                        stderr_path=td.stderr_fifo,
                    )
                )
            )
            phase["driver"] += time.perf_counter() - tp
            driver_cpu += time.process_time() - cp
        out["start_s"] = time.monotonic() - t0  # includes alloc dir build and logmon start
        for key, seconds in phase.items():
            out[f"{key}_ms_each"] = seconds / n * 1000
        time.sleep(1.0)  # let the wrappers settle at their steady state
        wrappers = [int(h.driver_state["WrapperPID"]) for h in handles]
        # CPU of a start: the driver's process (all its threads) during start_task, the
        # executors so far (their own start-up; the task's is the same either way) and the
        # spawner's share, if the executors were forked by one.
        out["driver_cpu_ms_each"] = driver_cpu / n * 1000
        out["executor_cpu_ms_each"] = sum(cpu_ms(p) for p in wrappers) / n
        spawner_cpu = cpu_ms(spawner.pid) - spawner_cpu0 if spawner and spawner.pid else 0.0
        out["spawner_cpu_ms_each"] = spawner_cpu / n
        out["wrapper_rss_kib"] = sum(status_kib(p, "VmRSS") for p in wrappers) / n
        out["wrapper_pss_kib"] = sum(pss_kib(p) for p in wrappers) / n
        out["agent_rss_mib"] = status_kib(os.getpid(), "VmRSS") / KIB
        out["agent_rss_growth_mib"] = (out["agent_rss_mib"] * KIB - rss_before) / KIB
        t0 = time.monotonic()
        for h in handles:
            driver.stop_task(h.task_id, 5.0)
        out["stop_s"] = time.monotonic() - t0
        for h in handles:
            driver.destroy_task(h.task_id, force=True)
            logmon.stop(h.task_id)
        handles.clear()
    finally:
        for h in handles:  # only after a failure: kill the rest hard
            try:
                os.killpg(int(h.driver_state["PGID"]), signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                driver.destroy_task(h.task_id, force=True)
            except Exception:
                pass
        logmon.close()
        for alloc in allocs:
            alloc.destroy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of tasks (default 1000)")
    parser.add_argument(
        "--no-sh", action="store_true", help="skip the sh wrapper run (the native one only)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as data_dir:
        popen_s = popen_sleepers(args.n)
        result = bench_driver(args.n, data_dir)
    print(f"tasks                      {args.n}")
    print(f"start, subprocess.Popen    {popen_s:.2f} s")
    print(f"start, raw_exec + logmon   {result['start_s']:.2f} s")
    print(f"ratio driver/Popen         {result['start_s'] / popen_s:.1f}x")
    print(f"  per task: alloc dir build {result['build_ms_each']:.2f} ms, "
          f"logmon start {result['logmon_ms_each']:.2f} ms, "
          f"driver start {result['driver_ms_each']:.2f} ms")  # fmt: skip
    print(f"  CPU per start: driver process {result['driver_cpu_ms_each']:.2f} ms, "
          f"executor {result['executor_cpu_ms_each']:.2f} ms, "
          f"spawner {result['spawner_cpu_ms_each']:.2f} ms")  # fmt: skip
    print(f"stop all (SIGINT)          {result['stop_s']:.2f} s")
    print(f"wrapper RSS per task       {result['wrapper_rss_kib']:.0f} KiB")
    print(f"wrapper PSS per task       {result['wrapper_pss_kib']:.0f} KiB")
    print(f"driver process RSS         {result['agent_rss_mib']:.1f} MiB")
    print(f"driver RSS growth          {result['agent_rss_growth_mib']:.1f} MiB")
    sys.stdout.flush()
    if args.no_sh:
        return
    with tempfile.TemporaryDirectory(prefix="bench-tasks-sh-") as data_dir:
        sh = bench_driver(args.n, data_dir, native=False)
    print(f"sh wrapper instead (same run): start {sh['start_s']:.2f} s, driver start "
          f"{sh['driver_ms_each']:.2f} ms per task, RSS {sh['wrapper_rss_kib']:.0f} KiB, "
          f"PSS {sh['wrapper_pss_kib']:.0f} KiB per task")  # fmt: skip
    print(f"driver start, executor / sh wrapper  "
          f"{result['driver_ms_each'] / sh['driver_ms_each']:.2f}x")  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
