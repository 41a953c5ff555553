"""Client state that lets a restarted agent re-attach; mirrors client/state/state_database.go.

Nomad keeps it in one BoltDB file, `<data_dir>/client/state.db`, written through bolt's
`DB.Batch` (`WithBatchMode`). Python ships no Bolt but does ship SQLite, which gives the
same shape: one file and atomic multi-row transactions. (The previous layout, one fsync'd
temp file + rename per row, paid an inode creation per write under one global lock.)

Durability is matched to what this state is for: re-attaching to tasks that outlived the
agent process. In WAL mode with `synchronous=NORMAL` an acknowledged commit is in the WAL
file when it returns, so it survives `kill -9` or a crash of the agent; it is not fsync'd
(the WAL is, at checkpoints), so an OS crash or power loss may roll back the last commits
(never corrupt the file). That loses nothing that matters: such a crash also ends every
task, so there is nothing left to re-attach to, and the restarted client takes its
allocations from the server as Nomad's does after a reboot. The fsync per commit it saves
costs ~0.5 ms on this machine's disk, one per task start.

Group commit, like `DB.Batch` without its fixed delay: a writer that finds no commit
running becomes the leader and commits everything queued in one transaction; writers
arriving meanwhile queue up, block, and the first of them leads the next batch.
Writes apply in call order, so within a batch the last put of a key wins, and a write is
never durable before the writes queued ahead of it. An error in a batch's transaction is
raised to every writer in it (as `StateDBError`, an `OSError`).

A write may be *deferred* (`durable=False`): it joins the queue and returns without
waiting, riding along with the next commit. The task runner defers the writes nothing
local acts on (`Received`, `Task Setup`, a task's start; the client flushes before it
tells the server anything). Deferred writes left without a durable one to ride with are
committed by a flusher thread that lives while there is work, after gathering for a few
ms, so a burst of task starts costs one commit per gathering.
`flush()` (and `close()`) waits for every write so far; a failed deferred write is logged.

Tables: `allocs` (alloc ID → the allocation as last received) and `tasks` ((alloc ID,
task name) → `{"TaskState", "Handle", "HooksDone"}`), rows are JSON in Nomad's shapes.
A data dir in the old layout (`client/state/allocs/<alloc_id>/{alloc.json,
task-<name>.json}`) is imported on first open, then that tree is removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nomadpaas.agent.helper.jsontext import SharedTexts, compact_encoder, splice

DB_FILE = "state.db"  # under <data_dir>/client/, as in Nomad
BUSY_TIMEOUT_S = 30.0  # another connection to the same file (an in-process restart) holds it
FILE_MODE = 0o600
FLUSHER_IDLE_S = 5.0  # the flusher thread leaves after this long without deferred work
# How long the flusher gathers deferred writes before committing them (bolt: 10 ms).
FLUSH_GATHER_S = 0.005
# Shared values whose JSON is remembered (by identity): a few per job version.
SHARED_JSON_CACHE_SIZE = 64

log = logging.getLogger("nomadpaas.agent.client.state")

# The pre-SQLite layout, imported once: client/state/allocs/<alloc_id>/...
LEGACY_DIR = "state"
LEGACY_IMPORTED_SUFFIX = ".imported"
LEGACY_ALLOC_FILE = "alloc.json"
LEGACY_TASK_PREFIX = "task-"
LEGACY_JSON_SUFFIX = ".json"

# Rowid tables: rows here are KBs of JSON, and SQLite's WITHOUT ROWID suits rows under
# about a twentieth of a page (a 1,000-allocation start's commits took ~25% more CPU with
# it). Files made by older agents keep their WITHOUT ROWID tables; the SQL is the same.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS allocs (
    id    TEXT PRIMARY KEY,
    alloc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    alloc_id TEXT NOT NULL,
    name     TEXT NOT NULL,
    state    TEXT NOT NULL,
    PRIMARY KEY (alloc_id, name)
);
"""
_PUT_ALLOC = "INSERT OR REPLACE INTO allocs (id, alloc) VALUES (?, ?)"
# A task row lands only while its allocation exists: a late put never resurrects a deleted one.
_PUT_TASK = (
    "INSERT OR REPLACE INTO tasks (alloc_id, name, state) "
    "SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM allocs WHERE id = ?1)"
)
_DELETE_TASKS = "DELETE FROM tasks WHERE alloc_id = ?"
_DELETE_ALLOC = "DELETE FROM allocs WHERE id = ?"

# (sql, params); a task put's last param is its LocalTaskState, encoded at commit time.
Statement = tuple[str, tuple[Any, ...]]


class StateDBError(OSError):
    """Committing a batch of client state writes failed (disk full, I/O error, closed DB)."""


@dataclass
class LocalTaskState:
    """One task runner's persisted state (Nomad: state.LocalState + TaskState)."""

    task_state: dict[str, Any]
    handle: dict[str, Any] | None = None  # drivers.TaskHandle.to_dict(), None when not running
    hooks_done: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"TaskState": self.task_state, "Handle": self.handle, "HooksDone": self.hooks_done}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LocalTaskState:
        return cls(
            task_state=dict(data["TaskState"]),
            handle=data.get("Handle"),
            hooks_done=list(data.get("HooksDone") or []),
        )


@dataclass
class RestoredAlloc:
    alloc: dict[str, Any]
    tasks: dict[str, LocalTaskState]


class _Write:
    """One caller's statements waiting in the group-commit queue."""

    __slots__ = ("done", "durable", "error", "statements", "wake")

    def __init__(self, statements: list[Statement], durable: bool) -> None:
        self.statements = statements
        self.durable = durable  # its caller waits for the commit
        # Set when done, or to hand this writer the lead. Only a writer that waits has one:
        # a deferred write (two per task start) is never woken, nor handed the lead.
        self.wake: threading.Event | None = threading.Event() if durable else None
        self.done = False
        self.error: BaseException | None = None


class ClientStateDB:
    """Thread-safe reads and group-committed, durable writes of allocations and tasks."""

    def __init__(self, data_dir: Path) -> None:
        client_dir = Path(data_dir) / "client"
        client_dir.mkdir(parents=True, exist_ok=True)
        self.path = client_dir / DB_FILE
        # Created by us so the WAL and shm files, which SQLite gives the db's mode, are private.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
        # One connection; `_conn_lock` serialises its users (the batch leader, readers).
        self._conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL: in WAL mode a commit is written (it survives `kill -9` of the agent) but
        # not fsync'd; see the module docstring for why that is the durability this needs.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._conn_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Write] = []
        self._committing = False  # a leader owns the batch in flight (or is being handed it)
        self._commits = 0
        self._flush_cond = threading.Condition(self._queue_lock)
        self._flush_pending = False  # a batch of deferred writes waits for the flusher
        self._flusher_alive = False
        self._shared_json = SharedTexts(_dumps, SHARED_JSON_CACHE_SIZE)
        _fsync_dir(client_dir)  # the new db file's directory entry
        self._import_legacy(client_dir)

    @property
    def commits(self) -> int:
        """Transactions committed so far by this handle (group commit makes it < writes)."""
        return self._commits

    # -- writes -----------------------------------------------------------------------

    def put_alloc(self, alloc: dict[str, Any], *, durable: bool = True) -> None:
        alloc_id = _check_alloc_id(str(alloc["ID"]))
        self._write([(_PUT_ALLOC, (alloc_id, self._alloc_json(alloc)))], durable)

    def put_task(
        self, alloc_id: str, task: str, state: LocalTaskState, *, durable: bool = True
    ) -> None:
        if "/" in task:
            raise ValueError(f"invalid task name {task!r}")
        _check_alloc_id(alloc_id)
        # Encoded when committed: a later put of the same task in that batch replaces it
        # unencoded (a start's `Received`, `Task Setup` and `Started` often share one).
        self._write([(_PUT_TASK, (alloc_id, task, state))], durable)

    def delete_alloc(self, alloc_id: str) -> None:
        _check_alloc_id(alloc_id)
        self._write([(_DELETE_TASKS, (alloc_id,)), (_DELETE_ALLOC, (alloc_id,))])

    def flush(self) -> None:
        """Return once every write made so far (deferred ones too) is committed, or its
        batch failed: that failure is the batch writers' to hear (a deferred one's is
        logged by the batch), not the flusher's."""
        with self._queue_lock:
            if not self._queue and not self._committing:
                return
        with contextlib.suppress(StateDBError):
            self._write([])

    def _alloc_json(self, alloc: dict[str, Any]) -> str:
        """The allocation's JSON, members in order. Its `Job` is the bulk of it and, with
        the resources and metric, often one object shared by many allocations: such a
        member, when it is one of the server's read-only values (a dict subclass; a plain
        dict may change), is encoded once and its text reused."""
        job = alloc.get("Job")
        if type(job) is dict or not isinstance(job, dict):
            return _dumps(alloc)  # no read-only Job (a restored allocation): none shared
        return splice(alloc, self._shared_member, _dumps)

    def _shared_member(self, key: str, value: Any) -> str | None:
        # Asked only for SHARED_ALLOC_FIELDS members (splice). A dict subclass is one of
        # the server's read-only values; a plain dict may change.
        if isinstance(value, dict) and type(value) is not dict:
            return self._shared_json.text(value)
        return None

    def _write(self, statements: list[Statement], durable: bool = True) -> None:
        """Queue `statements`; return once the transaction holding them is durable
        (deferred: at once)."""
        w = _Write(statements, durable)
        start_flusher = False
        with self._queue_lock:
            self._queue.append(w)
            if not durable:
                # Nobody waits for it: it rides with the commit running now (whose leader
                # hands what is left to the flusher), or the flusher commits it soon
                # with whatever else queues up meanwhile.
                if not self._committing:
                    start_flusher = self._wake_flusher()
                lead = False
            else:
                lead = not self._committing
                self._committing = True
        if not lead:
            if not durable:
                if start_flusher:
                    self._start_flusher()
                return
            assert w.wake is not None
            w.wake.wait()
            lead = not w.done  # woken to lead the next batch, which includes `w`
        if lead:
            self._lead()
        if w.error is not None and durable:
            raise StateDBError(f"client state {self.path}: {w.error}") from w.error

    def _lead(self) -> None:
        with self._queue_lock:
            batch, self._queue = self._queue, []
        error: BaseException | None = None
        start_flusher = False
        try:
            self._transact(_batch_statements(batch))
        except BaseException as exc:  # every writer in the batch hears of it
            error = exc
            if any(not w.durable for w in batch):
                log.warning("client state %s: deferred writes lost: %s", self.path, exc)
        finally:
            with self._queue_lock:
                # The next leader is a writer that waits; deferred writes wait for nobody.
                successor = next((w for w in self._queue if w.durable), None)
                self._committing = successor is not None
                if successor is None and self._queue:
                    start_flusher = self._wake_flusher()
            for w in batch:
                w.error = error
                w.done = True
                if w.wake is not None:
                    w.wake.set()
            if successor is not None and successor.wake is not None:
                successor.wake.set()
            elif start_flusher:
                self._start_flusher()

    def _wake_flusher(self) -> bool:
        """Hand the queued (deferred) writes to the flusher (queue lock held); True when
        its thread must be started."""
        self._flush_pending = True
        self._flush_cond.notify()
        if self._flusher_alive:
            return False
        self._flusher_alive = True
        return True

    def _start_flusher(self) -> None:
        threading.Thread(target=self._flusher, name="client-state-flush", daemon=True).start()

    def _flusher(self) -> None:
        """Lead the batches only deferred writes are waiting in, each after gathering
        for `FLUSH_GATHER_S` (bolt's MaxBatchDelay): a burst of task starts then costs a
        commit per gathering, not one per start. A durable writer arriving meanwhile
        does not wait for it: it leads at once and takes the deferred writes along."""
        while True:
            with self._queue_lock:
                if not self._flush_pending:
                    self._flush_cond.wait(FLUSHER_IDLE_S)
                if not self._flush_pending:
                    self._flusher_alive = False
                    return
                self._flush_pending = False
            time.sleep(FLUSH_GATHER_S)
            with self._queue_lock:
                if self._committing or not self._queue:
                    continue  # a leader took them, or will hand them back
                self._committing = True
            self._lead()

    def _transact(self, statements: Iterable[Statement]) -> None:
        with self._conn_lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    cur.execute(sql, params)
                cur.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        cur.execute("ROLLBACK")
                raise
            self._commits += 1

    # -- reads ------------------------------------------------------------------------

    def all_allocs(self) -> list[RestoredAlloc]:
        """Every saved allocation with its tasks; unreadable rows are skipped."""
        self.flush()
        with self._conn_lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN")  # one snapshot for both tables
            try:
                alloc_rows = cur.execute("SELECT id, alloc FROM allocs ORDER BY id").fetchall()
                task_rows = cur.execute(
                    "SELECT alloc_id, name, state FROM tasks ORDER BY alloc_id, name"
                ).fetchall()
            finally:
                cur.execute("COMMIT")
        tasks: dict[str, dict[str, LocalTaskState]] = {}
        for alloc_id, name, text in task_rows:
            local = _parse_task(text)
            if local is not None:
                tasks.setdefault(alloc_id, {})[name] = local
        out: list[RestoredAlloc] = []
        for alloc_id, text in alloc_rows:
            alloc = _parse_alloc(text)
            if alloc is not None:
                out.append(RestoredAlloc(alloc, tasks.get(alloc_id, {})))
        return out

    def close(self) -> None:
        self.flush()
        with self._conn_lock:
            self._conn.close()

    # -- migration --------------------------------------------------------------------

    def _import_legacy(self, client_dir: Path) -> None:
        """Import the old one-file-per-row tree, if any, then remove it.

        The tree is the whole truth while it exists (an older agent may have run on this
        data dir since), so it replaces the tables; it is renamed away only after the
        import committed, and a renamed copy left by a crash is simply removed."""
        legacy = client_dir / LEGACY_DIR
        imported = client_dir / (LEGACY_DIR + LEGACY_IMPORTED_SUFFIX)
        if imported.exists():
            shutil.rmtree(imported)
        if not legacy.is_dir():
            return
        statements: list[Statement] = [("DELETE FROM tasks", ()), ("DELETE FROM allocs", ())]
        allocs_dir = legacy / "allocs"
        for entry in sorted(allocs_dir.iterdir()) if allocs_dir.is_dir() else []:
            try:
                alloc_text = (entry / LEGACY_ALLOC_FILE).read_text()
            except OSError:
                continue
            if _parse_alloc(alloc_text) is None:
                continue
            statements.append((_PUT_ALLOC, (entry.name, alloc_text)))
            for f in sorted(entry.glob(f"{LEGACY_TASK_PREFIX}*{LEGACY_JSON_SUFFIX}")):
                name = f.name[len(LEGACY_TASK_PREFIX) : -len(LEGACY_JSON_SUFFIX)]
                try:
                    task_text = f.read_text()
                except OSError:
                    continue
                if _parse_task(task_text) is not None:
                    statements.append((_PUT_TASK, (entry.name, name, task_text)))
        self._transact(statements)
        os.rename(legacy, imported)
        _fsync_dir(client_dir)
        shutil.rmtree(imported)


def _batch_statements(batch: list[_Write]) -> list[Statement]:
    """The batch's statements in call order, each task put encoded, except those a later
    put of the same task replaces (INSERT OR REPLACE; nothing in between reads tasks)."""
    flat = [s for w in batch for s in w.statements]
    last = {(p[0], p[1]): i for i, (sql, p) in enumerate(flat) if sql is _PUT_TASK}
    out: list[Statement] = []
    for i, (sql, params) in enumerate(flat):
        if sql is _PUT_TASK:
            if last[(params[0], params[1])] != i:
                continue
            state = params[2]
            if isinstance(state, LocalTaskState):
                params = (params[0], params[1], _dumps(state.to_json()))
        out.append((sql, params))
    return out


def _check_alloc_id(alloc_id: str) -> str:
    if not alloc_id or "/" in alloc_id or alloc_id in (".", ".."):
        raise ValueError(f"invalid allocation ID {alloc_id!r}")
    return alloc_id


_dumps = compact_encoder()


def _parse_alloc(text: str) -> dict[str, Any] | None:
    try:
        alloc = json.loads(text)
    except ValueError:
        return None
    return alloc if isinstance(alloc, dict) else None


def _parse_task(text: str) -> LocalTaskState | None:
    try:
        return LocalTaskState.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
