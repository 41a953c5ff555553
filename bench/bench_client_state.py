"""Benchmark: the client state DB under the alloc start path's write pattern, SQLite with
group commit (nomadpaas/agent/client/state.py; WAL, synchronous=NORMAL: commits survive an
agent crash, see its docstring) against the previous layout (one fsync'd temp file + rename
per row under one global lock, re-implemented here as the baseline).

N threads start together; each plays one allocation's ~6 durable writes (put_alloc, task
pending, task running + handle, alloc update, hooks done, task update). Both sides run in
the same process on the same filesystem, interleaved for several rounds; medians reported.

    .venv/bin/python bench/bench_client_state.py                  # 1000 allocs, 3 rounds
    .venv/bin/python bench/bench_client_state.py --n 300 --rounds 5 --tmp /dev/shm
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from nomadpaas.agent.client.state import ClientStateDB, LocalTaskState

JOIN_TIMEOUT_S = 300.0
THREAD_STACK_BYTES = 256 * 1024  # 1000 threads; the default 8 MiB reservation is wasteful


class StateDB(Protocol):
    def put_alloc(self, alloc: dict[str, Any]) -> None: ...
    def put_task(self, alloc_id: str, task: str, state: LocalTaskState) -> None: ...


class FilePerRowDB:
    """The old ClientStateDB write path: temp file, write, fsync, rename, one global lock."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "client" / "state" / "allocs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def put_alloc(self, alloc: dict[str, Any]) -> None:
        with self._lock:
            _atomic_write(self.root / str(alloc["ID"]) / "alloc.json", alloc)

    def put_task(self, alloc_id: str, task: str, state: LocalTaskState) -> None:
        with self._lock:
            path = self.root / alloc_id / f"task-{task}.json"
            if path.parent.exists():
                _atomic_write(path, state.to_json())


def _atomic_write(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(obj, separators=(",", ":")).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def one_alloc(db: StateDB, i: int) -> None:
    alloc: dict[str, Any] = {"ID": f"{i:08d}-bench", "Job": {"ID": "bench"}, "N": 0}
    handle = {"Version": 1, "TaskID": f"{alloc['ID']}/web", "Pid": 1000 + i}
    db.put_alloc(alloc)
    db.put_task(alloc["ID"], "web", LocalTaskState({"State": "pending", "Events": []}))
    db.put_task(alloc["ID"], "web", LocalTaskState({"State": "running"}, handle))
    db.put_alloc({**alloc, "N": 1})
    db.put_task(alloc["ID"], "web", LocalTaskState({"State": "running"}, handle, ["task_dir"]))
    db.put_task(alloc["ID"], "web", LocalTaskState({"State": "running", "N": 2}, handle))


def timed_run(make: Callable[[Path], StateDB], base: Path, n: int) -> tuple[float, StateDB]:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-client-state-", dir=base))
    try:
        db = make(data_dir)
        start = threading.Barrier(n + 1, timeout=JOIN_TIMEOUT_S)

        def run(i: int) -> None:
            start.wait()
            one_alloc(db, i)

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        start.wait()
        began = time.monotonic()
        deadline = began + JOIN_TIMEOUT_S
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                raise TimeoutError(f"writers still running after {JOIN_TIMEOUT_S}s")
        return time.monotonic() - began, db
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="allocations (= threads)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="filesystem to test")
    args = parser.parse_args()
    threading.stack_size(THREAD_STACK_BYTES)
    base = Path(args.tmp)
    old_s: list[float] = []
    new_s: list[float] = []
    commits: list[int] = []
    for _ in range(args.rounds):  # interleaved: both sides see the same machine load
        elapsed, _db = timed_run(FilePerRowDB, base, args.n)
        old_s.append(elapsed)
        elapsed, db = timed_run(ClientStateDB, base, args.n)
        new_s.append(elapsed)
        assert isinstance(db, ClientStateDB)
        commits.append(db.commits)
        db.close()
    old, new = statistics.median(old_s), statistics.median(new_s)
    writes = 6 * args.n
    print(f"{args.n} allocs x 6 puts from {args.n} threads on {base}, {args.rounds} rounds")
    print(f"file per row: {old:.2f}s median ({', '.join(f'{s:.2f}' for s in old_s)})")
    print(f"sqlite group: {new:.2f}s median ({', '.join(f'{s:.2f}' for s in new_s)}); "
          f"{statistics.median(commits):.0f} commits for {writes} writes")  # fmt: skip
    print(f"ratio: {old / new:.1f}x faster ({writes / new:,.0f} vs {writes / old:,.0f} puts/s)")


if __name__ == "__main__":
    main()
