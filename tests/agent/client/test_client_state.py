"""The client state DB: rows round-trip, a deleted allocation is never resurrected, writes
are group-committed and durable across `kill -9`, the old file-per-row layout is imported."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path

import pytest

from nomadpaas.agent.client.state import ClientStateDB, LocalTaskState, StateDBError

THREADS = 200
DEADLINE_S = 60.0  # generous: a loaded 2-core machine


@pytest.fixture
def db(tmp_path: Path) -> Iterator[ClientStateDB]:
    handle = ClientStateDB(tmp_path)
    try:
        yield handle
    finally:
        handle.close()


def reopen(tmp_path: Path) -> ClientStateDB:
    return ClientStateDB(tmp_path)


def wait_until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def run_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    join_all(threads)
    return errors


# The tables of a file made by an agent before rowid tables (same SQL works on both).
WITHOUT_ROWID_SCHEMA = """
CREATE TABLE allocs (id TEXT PRIMARY KEY, alloc TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE tasks (alloc_id TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
                    PRIMARY KEY (alloc_id, name)) WITHOUT ROWID;
"""


@pytest.mark.parametrize("older_file", [False, True], ids=["new file", "older agent's file"])
def test_rows_round_trip_and_delete(tmp_path: Path, older_file: bool) -> None:
    if older_file:
        (tmp_path / "client").mkdir()
        with sqlite3.connect(tmp_path / "client" / "state.db") as conn:
            conn.executescript(WITHOUT_ROWID_SCHEMA)
    db = ClientStateDB(tmp_path)
    try:
        _round_trip_and_delete(db, tmp_path)
    finally:
        db.close()
    with sqlite3.connect(tmp_path / "client" / "state.db") as conn:
        tables = [
            sql for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE type='table'")
        ]
    assert len(tables) == 2 and all(("WITHOUT ROWID" in sql) == older_file for sql in tables)


def _round_trip_and_delete(db: ClientStateDB, tmp_path: Path) -> None:
    db.put_alloc({"ID": "a1", "Job": {"ID": "web"}})
    db.put_task("a1", "web", LocalTaskState({"State": "running"}, {"TaskID": "x"}, ["task_dir"]))
    db.put_task("gone", "web", LocalTaskState({"State": "running"}))  # no alloc: not created
    [restored] = db.all_allocs()
    assert restored.alloc == {"ID": "a1", "Job": {"ID": "web"}}
    assert restored.tasks["web"].handle == {"TaskID": "x"}
    assert restored.tasks["web"].hooks_done == ["task_dir"]
    [again] = reopen(tmp_path).all_allocs()
    assert again == restored
    db.delete_alloc("a1")
    db.put_task("a1", "web", LocalTaskState({"State": "dead"}))  # deleted: not resurrected
    assert db.all_allocs() == []
    db.put_alloc({"ID": "a1", "N": 2})  # a new version starts without the old task rows
    assert [(r.alloc["N"], r.tasks) for r in reopen(tmp_path).all_allocs()] == [(2, {})]


def test_later_puts_replace_earlier_ones(db: ClientStateDB) -> None:
    db.put_alloc({"ID": "b", "N": 1})
    db.put_alloc({"ID": "a", "N": 1})
    db.put_alloc({"ID": "b", "N": 2})
    db.put_task("b", "web", LocalTaskState({"State": "pending"}))
    db.put_task("b", "web", LocalTaskState({"State": "running"}, None, ["a", "b"]))
    db.put_task("b", "log", LocalTaskState({"State": "running"}))
    a, b = db.all_allocs()  # ordered by ID
    assert (a.alloc, b.alloc) == ({"ID": "a", "N": 1}, {"ID": "b", "N": 2})
    assert sorted(b.tasks) == ["log", "web"]
    assert b.tasks["web"] == LocalTaskState({"State": "running"}, None, ["a", "b"])


@pytest.mark.parametrize("bad", ["", "a/b", ".", "..", "../x"])
def test_invalid_ids_are_refused(db: ClientStateDB, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid allocation ID"):
        db.put_alloc({"ID": bad})
    with pytest.raises(ValueError, match="invalid allocation ID"):
        db.put_task(bad, "web", LocalTaskState({}))
    with pytest.raises(ValueError, match="invalid allocation ID"):
        db.delete_alloc(bad)
    with pytest.raises(ValueError, match="invalid task name"):
        db.put_task("a1", "x/y", LocalTaskState({}))
    assert db.all_allocs() == [] and db.commits == 0


def test_concurrent_writers_are_durable_and_share_commits(
    db: ClientStateDB, tmp_path: Path
) -> None:
    start = threading.Barrier(THREADS, timeout=DEADLINE_S)

    def writer(i: int) -> Callable[[], None]:
        def run() -> None:
            start.wait()
            db.put_alloc({"ID": f"alloc-{i:03d}"})
            db.put_task(f"alloc-{i:03d}", "web", LocalTaskState({"State": "running", "I": i}))

        return run

    assert run_threads([writer(i) for i in range(THREADS)]) == []
    restored = reopen(tmp_path).all_allocs()
    assert [r.tasks["web"].task_state["I"] for r in restored] == list(range(THREADS))
    # 400 writes; contention groups them (typically a few dozen commits on this VM).
    assert db.commits < THREADS // 2, f"{db.commits} commits for {2 * THREADS} writes"


def hold_commits(db: ClientStateDB) -> threading.Lock:
    """Block the batch leader inside its transaction so the next writers queue up."""
    lock: threading.Lock = db._conn_lock
    lock.acquire()
    return lock


def queued(db: ClientStateDB) -> int:
    with db._queue_lock:
        return len(db._queue)


def queue_has(db: ClientStateDB, n: int) -> Callable[[], bool]:
    return lambda: queued(db) == n


def refuse_alloc_bad(db: ClientStateDB) -> None:
    """Make every commit that inserts alloc "bad" fail ('refused by test')."""
    with sqlite3.connect(db.path) as other:
        other.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON allocs WHEN NEW.id = 'bad' "
            "BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
        )


def held_leader(db: ClientStateDB) -> tuple[threading.Lock, threading.Thread]:
    """A writer (of alloc "lead") leading a commit held open: writers after it queue up
    until the returned lock is released."""
    held = hold_commits(db)
    leader = threading.Thread(target=db.put_alloc, args=({"ID": "lead"},), daemon=True)
    leader.start()
    wait_until(lambda: db._committing and queued(db) == 0, "a leader")
    return held, leader


def join_all(threads: Iterable[threading.Thread]) -> None:
    for t in threads:
        t.join(DEADLINE_S)
        assert not t.is_alive(), "writer thread hung"


def test_writers_arriving_during_a_commit_go_in_one_next_batch(db: ClientStateDB) -> None:
    held = hold_commits(db)
    first = threading.Thread(target=db.put_alloc, args=({"ID": "first"},), daemon=True)
    first.start()
    wait_until(lambda: queued(db) == 0 and db._committing, "the first writer leads")
    others = [
        threading.Thread(target=db.put_alloc, args=({"ID": f"w{i}"},), daemon=True)
        for i in range(20)
    ]
    for t in others:
        t.start()
    wait_until(lambda: queued(db) == 20, "20 writers queued behind the commit")
    held.release()
    join_all((first, *others))
    assert db.commits == 2  # the first alone, then the 20 queued ones together
    assert len(db.all_allocs()) == 21


def test_a_batch_applies_writes_in_call_order(db: ClientStateDB, tmp_path: Path) -> None:
    db.put_alloc({"ID": "gone"})
    held, leader = held_leader(db)
    calls: list[Callable[[], None]] = [
        *(partial(db.put_alloc, {"ID": "k", "N": n}) for n in range(5)),
        partial(db.delete_alloc, "gone"),
        partial(db.put_task, "gone", "web", LocalTaskState({"State": "dead"})),
        partial(db.put_task, "k", "web", LocalTaskState({"State": "running"})),
    ]
    threads = []
    for call in calls:  # queued one after the other: a known call order
        threads.append(threading.Thread(target=call, daemon=True))
        threads[-1].start()
        wait_until(queue_has(db, len(threads)), f"write {len(threads)} queued")
    held.release()
    join_all((leader, *threads))
    assert db.commits == 3  # "gone", the leader's, then one batch of everything else
    by_id = {r.alloc["ID"]: r for r in reopen(tmp_path).all_allocs()}
    assert sorted(by_id) == ["k", "lead"]  # "gone" was not resurrected by its late task put
    assert by_id["k"].alloc["N"] == 4 and list(by_id["k"].tasks) == ["web"]


def test_a_failed_commit_is_raised_to_every_writer_in_the_batch(
    db: ClientStateDB, tmp_path: Path
) -> None:
    refuse_alloc_bad(db)  # any error inside the transaction will do
    held, leader = held_leader(db)
    errors: list[BaseException] = []

    def put(alloc_id: str) -> None:
        try:
            db.put_alloc({"ID": alloc_id})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,), daemon=True) for i in ("x", "bad", "y")]
    for t in threads:
        t.start()
    wait_until(lambda: queued(db) == 3, "the batch queued")
    held.release()
    join_all((leader, *threads))
    assert len(errors) == 3
    assert all(isinstance(e, StateDBError) and isinstance(e, OSError) for e in errors)
    assert all("refused by test" in str(e) for e in errors)
    assert [r.alloc["ID"] for r in reopen(tmp_path).all_allocs()] == ["lead"]  # all or nothing
    db.put_alloc({"ID": "z"})  # the next batch commits normally
    assert [r.alloc["ID"] for r in db.all_allocs()] == ["lead", "z"]


def test_unreadable_rows_are_skipped(db: ClientStateDB) -> None:
    db.put_alloc({"ID": "ok"})
    db.put_alloc({"ID": "torn"})
    db.put_task("ok", "web", LocalTaskState({"State": "running"}))
    db.put_task("ok", "bad", LocalTaskState({"State": "running"}))
    with sqlite3.connect(db.path) as other:
        other.execute("UPDATE allocs SET alloc = '{\"ID\": ' WHERE id = 'torn'")
        other.execute("UPDATE tasks SET state = '[1, 2]' WHERE name = 'bad'")
    [restored] = db.all_allocs()
    assert restored.alloc == {"ID": "ok"} and list(restored.tasks) == ["web"]


WRITER = """
import sys, threading
from pathlib import Path
from nomadpaas.agent.client.state import ClientStateDB, LocalTaskState

db = ClientStateDB(Path(sys.argv[1]))
out = threading.Lock()

def work(t):
    for n in range(1_000_000):
        db.put_alloc({"ID": f"a{t}", "N": n})
        db.put_task(f"a{t}", "web", LocalTaskState({"N": n}))
        with out:
            sys.stdout.write(f"{t} {n}\\n")
            sys.stdout.flush()

for t in range(8):
    threading.Thread(target=work, args=(t,), daemon=True).start()
threading.Event().wait()
"""


def record_ack(acked: dict[str, int], line: str) -> None:
    thread, version = line.split()
    acked[f"a{thread}"] = int(version)


def test_every_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    acked: dict[str, int] = {}
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + DEADLINE_S
        while sum(acked.values()) < 400 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "writer exited early"
            record_ack(acked, line)
        proc.send_signal(signal.SIGKILL)  # while writes are in flight
    finally:
        proc.kill()
        proc.wait(DEADLINE_S)
    assert proc.stdout is not None
    for line in proc.stdout:  # acknowledged before the kill, read after it
        record_ack(acked, line)
    assert len(acked) == 8 and sum(acked.values()) >= 400
    stored = {r.alloc["ID"]: r for r in reopen(tmp_path).all_allocs()}
    for alloc_id, n in acked.items():
        assert stored[alloc_id].alloc["N"] >= n
        assert stored[alloc_id].tasks["web"].task_state["N"] >= n


def write_legacy(data_dir: Path, rows: dict[str, dict[str, str]]) -> Path:
    """The pre-SQLite layout: allocs/<alloc_id>/alloc.json and task-<name>.json files."""
    root = data_dir / "client" / "state" / "allocs"
    for alloc_id, files in rows.items():
        (root / alloc_id).mkdir(parents=True)
        for name, text in files.items():
            (root / alloc_id / name).write_text(text)
    return data_dir / "client" / "state"


def test_old_layout_is_imported_once_then_removed(tmp_path: Path) -> None:
    task = {"TaskState": {"State": "running"}, "Handle": {"TaskID": "a1/web"}, "HooksDone": []}
    legacy = write_legacy(
        tmp_path,
        {
            "a1": {
                "alloc.json": json.dumps({"ID": "a1", "N": 1}),
                "task-web.json": json.dumps(task),
                "task-log.json": "{torn",
                "task-web.json.tmp": "{",  # a write interrupted by a crash
            },
            "a2": {"alloc.json": '{"ID": '},  # torn: skipped, like before
            "a3": {"task-web.json": json.dumps(task)},  # no alloc.json: skipped
        },
    )
    db = ClientStateDB(tmp_path)
    [restored] = db.all_allocs()
    assert restored.alloc == {"ID": "a1", "N": 1}
    assert restored.tasks == {"web": LocalTaskState.from_json(task)}
    assert not legacy.exists() and not (tmp_path / "client" / "state.imported").exists()
    db.delete_alloc("a1")
    db.close()
    assert reopen(tmp_path).all_allocs() == []  # imported once, not again


def test_old_layout_left_by_an_older_agent_replaces_the_tables(tmp_path: Path) -> None:
    db = ClientStateDB(tmp_path)
    db.put_alloc({"ID": "stale"})  # an older agent ran afterwards and removed it
    db.close()
    write_legacy(tmp_path, {"fresh": {"alloc.json": json.dumps({"ID": "fresh"})}})
    (tmp_path / "client" / "state.imported").mkdir()  # a crash mid-removal of an import
    assert [r.alloc["ID"] for r in reopen(tmp_path).all_allocs()] == ["fresh"]
    assert not (tmp_path / "client" / "state.imported").exists()


def test_db_files_are_private(db: ClientStateDB) -> None:
    db.put_alloc({"ID": "a1"})
    for name in ("state.db", "state.db-wal"):
        assert os.stat(db.path.parent / name).st_mode & 0o077 == 0, name


def test_a_deferred_write_rides_along_and_never_outlives_a_later_durable_one(
    db: ClientStateDB, tmp_path: Path
) -> None:
    held, leader = held_leader(db)
    # While a commit runs, a deferred write returns at once instead of waiting for it.
    db.put_alloc({"ID": "d"}, durable=False)
    db.put_task("d", "web", LocalTaskState({"State": "pending"}), durable=False)
    assert queued(db) == 2
    late = threading.Thread(
        target=db.put_task, args=("d", "web", LocalTaskState({"State": "running"})), daemon=True
    )
    late.start()
    wait_until(queue_has(db, 3), "the durable write queued behind them")
    held.release()
    join_all((leader, late))
    # One batch carried the deferred writes and the durable one after them.
    assert db.commits == 2
    by_id = {r.alloc["ID"]: r for r in reopen(tmp_path).all_allocs()}
    assert by_id["d"].tasks["web"].task_state == {"State": "running"}


def test_deferred_writes_alone_are_committed_by_the_flusher(
    db: ClientStateDB, tmp_path: Path
) -> None:
    db.put_alloc({"ID": "a"}, durable=False)  # nothing to ride along with
    wait_until(lambda: db.commits == 1, "the flusher's commit")
    assert [r.alloc["ID"] for r in reopen(tmp_path).all_allocs()] == ["a"]
    held = hold_commits(db)
    for i in range(5):
        db.put_alloc({"ID": f"b{i}"}, durable=False)
    held.release()
    db.flush()  # waits for all of them
    assert len(reopen(tmp_path).all_allocs()) == 6


def test_a_failed_deferred_write_is_logged_not_raised(
    db: ClientStateDB, caplog: pytest.LogCaptureFixture
) -> None:
    refuse_alloc_bad(db)
    db.put_alloc({"ID": "bad"}, durable=False)
    db.flush()
    wait_until(lambda: "deferred writes lost" in caplog.text, "the warning")
    assert db.all_allocs() == []
    db.put_alloc({"ID": "ok"})
    assert [r.alloc["ID"] for r in db.all_allocs()] == ["ok"]


def test_a_shared_job_is_encoded_once_and_round_trips(db: ClientStateDB) -> None:
    class ReadOnly(dict[str, object]):
        """Stands in for the server's frozen rows (a dict subclass)."""

    job = ReadOnly({"ID": "web", "TaskGroups": [{"Name": "g"}]})
    for i in range(3):
        db.put_alloc({"ID": f"a{i}", "Job": job, "Index": i})
    db.put_alloc({"ID": "plain", "Job": {"ID": "other"}})
    db.put_alloc({"ID": "nojob"})
    assert len(db._shared_json) == 1  # one entry for the read-only job, none for the plain one
    by_id = {r.alloc["ID"]: r.alloc for r in db.all_allocs()}
    assert by_id["a2"] == {"ID": "a2", "Job": {"ID": "web", "TaskGroups": [{"Name": "g"}]},
                           "Index": 2}  # fmt: skip
    assert by_id["plain"]["Job"] == {"ID": "other"} and by_id["nojob"] == {"ID": "nojob"}


def test_shared_read_only_members_are_encoded_once_in_place(db: ClientStateDB) -> None:
    class ReadOnly(dict[str, object]):
        """Stands in for the server's frozen rows (a dict subclass)."""

    job = ReadOnly({"ID": "web", "Name": "wéb"})
    resources = ReadOnly({"CPU": 100, "Networks": None})
    metrics = ReadOnly({"NodesEvaluated": 1, "Scores": {"n1": 0.5}})
    texts = []
    for i in range(3):
        states = ReadOnly({"t": {"State": "pending"}})
        alloc = {"ID": f"a{i}", "Job": job, "Resources": resources, "Index": i,
                 "Metrics": metrics, "TaskStates": states}  # fmt: skip
        texts.append(db._alloc_json(alloc))
        # The same text as a plain encoding: members in their order, compact, ASCII.
        assert texts[-1] == json.dumps(alloc, separators=(",", ":"))
    assert len(db._shared_json) == 3  # Job, Resources, Metrics; TaskStates is not shared
    assert len(set(texts)) == 3


def test_a_task_put_replaced_later_in_its_batch_is_never_encoded(
    db: ClientStateDB, tmp_path: Path
) -> None:
    db.put_alloc({"ID": "a"})
    held, leader = held_leader(db)
    # A set cannot be encoded as JSON: the batch would fail if this put were encoded.
    db.put_task("a", "web", LocalTaskState({"State": "pending", "X": {1}}), durable=False)
    final = threading.Thread(
        target=db.put_task, args=("a", "web", LocalTaskState({"State": "running"})), daemon=True
    )
    final.start()
    wait_until(queue_has(db, 2), "both puts queued")
    held.release()
    join_all((leader, final))
    by_id = {r.alloc["ID"]: r for r in reopen(tmp_path).all_allocs()}
    assert by_id["a"].tasks["web"].task_state == {"State": "running"}
