"""A stand-in agent for the re-attach test: starts tasks via raw_exec + LogMon, then idles.

Usage: python agent_sim.py <data_dir> <handles.json> <max_file_size_bytes> <task>...
Each task prints numbered lines every 20 ms until SIGINT ("bye", exit 0) or until the file
<data_dir>/exit-<task> exists ("final", exit 7). The test SIGKILLs this process.
"""

from __future__ import annotations

import json
import os
import sys
import time

from nomadpaas.agent.client.allocdir import AllocDir
from nomadpaas.agent.client.logmon.logmon import LogMon, LogmonConfig
from nomadpaas.agent.drivers.base import TaskConfig
from nomadpaas.agent.drivers.rawexec.driver import RawExecDriver

ALLOC_ID = "5e1f0000-0000-0000-0000-00000000a11c"
MAX_FILES = 1000  # keep every rotated file so the test can check nothing was lost

TASK_PROGRAM = r"""
import os, signal, sys, time
marker, tag = sys.argv[1], sys.argv[2]
def bye(*_):
    print("bye", flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, bye)
n = 0
while True:
    if os.path.exists(marker):
        print("final", flush=True)
        sys.exit(7)
    print(f"{tag} line {n:06d}", flush=True)
    n += 1
    time.sleep(0.02)
"""


def logmon_config(alloc: AllocDir, task: str, max_file_size_bytes: int) -> LogmonConfig:
    td = alloc.task_dir(task)
    return LogmonConfig(
        log_dir=td.log_dir,
        stdout_log_file=f"{task}.stdout",
        stderr_log_file=f"{task}.stderr",
        stdout_fifo=td.stdout_fifo,
        stderr_fifo=td.stderr_fifo,
        max_files=MAX_FILES,
        max_file_size_bytes=max_file_size_bytes,
    )


def main() -> None:
    data_dir, handles_path, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tasks = sys.argv[4:]
    alloc = AllocDir(data_dir, ALLOC_ID)
    dirs = alloc.build(tasks)
    logmon = LogMon()
    driver = RawExecDriver()
    handles = []
    for task in tasks:
        logmon.start(task, logmon_config(alloc, task, size))
        td = dirs[task]
        marker = os.path.join(data_dir, f"exit-{task}")
        cfg = TaskConfig(
            id=task,
            alloc_id=ALLOC_ID,
            name=task,
            command=sys.executable,
            args=("-c", TASK_PROGRAM, marker, f"{task}-marker"),
            env=dict(os.environ),
            alloc_dir=alloc.root,
            task_dir=td.dir,
            stdout_path=td.stdout_fifo,
            stderr_path=td.stderr_fifo,
        )
        handles.append(driver.start_task(cfg).to_dict())
    with open(handles_path + ".tmp", "w") as f:
        json.dump(handles, f)
    os.rename(handles_path + ".tmp", handles_path)
    deadline = time.monotonic() + 300  # bounded even if the test forgets us
    while time.monotonic() < deadline:
        time.sleep(1)


if __name__ == "__main__":
    main()
