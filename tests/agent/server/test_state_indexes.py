"""State store secondary indexes and tallies: after every commit, and inside a write
transaction, they answer exactly what a scan of the table answers; they survive a reopen.
Rows are persisted byte-for-byte as `json.dumps` would write them, and a state.db from an
earlier build (WITHOUT ROWID rows table) still loads and takes writes."""

from __future__ import annotations

import json
import random
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from nomadpaas.agent.server.state import lookups
from nomadpaas.agent.server.state.frozen import FrozenDict, freeze, freeze_shared, thaw
from nomadpaas.agent.server.state.row_encoder import RowEncoder
from nomadpaas.agent.server.state.schema import (
    ALLOCS,
    EVALS,
    INDEX_EVAL,
    INDEX_JOB,
    INDEX_NODE,
    TALLY_JOB_ALLOCS,
)
from nomadpaas.agent.server.state.state_store import Snapshot, StateStore, Txn

TABLES = (ALLOCS, EVALS, "nodes")
JOBS = [("default", "web"), ("default", "api"), ("other", "web")]
STATUSES = ["pending", "running", "complete", "failed", None]


def _alloc(rng: random.Random, alloc_id: str) -> dict[str, Any]:
    ns, job_id = rng.choice(JOBS)
    return {
        "ID": alloc_id,
        "Namespace": ns,
        "JobID": job_id,
        "NodeID": rng.choice(["n1", "n2"]),
        "EvalID": rng.choice(["e1", "e2", "e3"]),
        "TaskGroup": rng.choice(["a", "b"]),
        "ClientStatus": rng.choice(STATUSES),
        "DesiredStatus": rng.choice(["run", "stop"]),
        "Job": rng.choice([{"CreateIndex": 1}, {"CreateIndex": 7}, None]),
    }


def _scan_index(rows: list[Any], fields: tuple[str, ...], value: tuple[Any, ...]) -> list[str]:
    return [r["ID"] for r in rows if tuple(r.get(f) for f in fields) == value]


def _scan_tally(rows: list[Any], ns: str, job_id: str) -> dict[tuple[Any, ...], int]:
    counted = Counter(
        (
            (r.get("Job") or {}).get("CreateIndex"),
            r["TaskGroup"],
            r["ClientStatus"],
            r["DesiredStatus"],
        )
        for r in rows
        if (r["Namespace"], r["JobID"]) == (ns, job_id)
    )
    return dict(counted)


def _check(reader: Snapshot | Txn) -> None:
    rows = reader.list(ALLOCS)
    for ns, job_id in JOBS:
        found = [a["ID"] for a in lookups.allocs_by_job(reader, ns, job_id)]
        assert found == _scan_index(rows, ("Namespace", "JobID"), (ns, job_id))
        assert reader.tally(ALLOCS, TALLY_JOB_ALLOCS, (ns, job_id)) == _scan_tally(rows, ns, job_id)
    for node in ("n1", "n2", "n3"):
        by_node = [a["ID"] for a in reader.by_index(ALLOCS, INDEX_NODE, (node,))]
        assert by_node == _scan_index(rows, ("NodeID",), (node,))
    for eval_id in ("e1", "e2", "e3"):
        by_eval = [a["ID"] for a in reader.by_index(ALLOCS, INDEX_EVAL, (eval_id,))]
        assert by_eval == _scan_index(rows, ("EvalID",), (eval_id,))


def _random_writes(store: StateStore, rng: random.Random, commits: int) -> None:
    ids = [f"{i:03d}" for i in range(40)]
    for _ in range(commits):

        def fn(txn: Txn) -> None:
            for _ in range(rng.randint(1, 6)):
                alloc_id = rng.choice(ids)
                current = txn.get(ALLOCS, (alloc_id,))
                roll = rng.random()
                if roll < 0.15:
                    txn.delete(ALLOCS, (alloc_id,))
                elif current is not None and roll < 0.7:
                    changed = thaw(current)
                    field = rng.choice(["ClientStatus", "NodeID", "JobID", "DesiredStatus"])
                    changed[field] = _alloc(rng, alloc_id)[field]
                    txn.put(ALLOCS, (alloc_id,), changed)
                else:
                    txn.put(ALLOCS, (alloc_id,), _alloc(rng, alloc_id))
                _check(txn)  # the overlay of pending rows, mid-transaction

        store.write("Test", fn)
        _check(store.snapshot())


def test_indexes_and_tallies_match_a_full_scan_after_random_writes(tmp_path: Path) -> None:
    rng = random.Random(42)
    store = StateStore(tmp_path / "state.db", TABLES)
    try:
        _random_writes(store, rng, commits=150)
        before = store.snapshot()
    finally:
        store.close()
    reopened = StateStore(tmp_path / "state.db", TABLES)
    try:
        snap = reopened.snapshot()
        _check(snap)  # built from the rows at open
        assert snap.list(ALLOCS) == before.list(ALLOCS)
        _random_writes(reopened, rng, commits=20)
    finally:
        reopened.close()


def test_old_snapshots_keep_their_indexes_and_tallies() -> None:
    store = StateStore(None, TABLES)
    rng = random.Random(7)
    store.write("Put", lambda txn: txn.put(ALLOCS, ("a",), {**_alloc(rng, "a"), "NodeID": "n1"}))
    old = store.snapshot()
    old_tally = old.tally(ALLOCS, TALLY_JOB_ALLOCS, (old.list(ALLOCS)[0]["Namespace"], "web"))

    def move(txn: Txn) -> None:
        row = thaw(txn.get(ALLOCS, ("a",)))
        txn.put(ALLOCS, ("a",), {**row, "NodeID": "n2", "JobID": "web", "ClientStatus": "lost"})

    store.write("Move", move)
    assert [a["ID"] for a in old.by_index(ALLOCS, INDEX_NODE, ("n1",))] == ["a"]
    assert old.by_index(ALLOCS, INDEX_NODE, ("n2",)) == []
    assert old.tally(ALLOCS, TALLY_JOB_ALLOCS, (old.list(ALLOCS)[0]["Namespace"], "web")) == (
        old_tally
    )
    new = store.snapshot()
    assert [a["ID"] for a in new.by_index(ALLOCS, INDEX_NODE, ("n2",))] == ["a"]
    _check(new)


def test_evals_by_job_index() -> None:
    store = StateStore(None, TABLES)

    def fn(txn: Txn) -> None:
        for i, (ns, job_id) in enumerate(JOBS * 2):
            txn.put(EVALS, (f"e{i}",), {"ID": f"e{i}", "Namespace": ns, "JobID": job_id})

    store.write("Evals", fn)
    snap = store.snapshot()
    assert [e["ID"] for e in lookups.evals_by_job(snap, "default", "web")] == ["e0", "e3"]
    assert [e["ID"] for e in snap.by_index(EVALS, INDEX_JOB, ("other", "web"))] == ["e2", "e5"]


def test_row_encoder_writes_what_json_dumps_writes() -> None:
    encoder = RowEncoder(cache_entries=2)
    job = freeze({"ID": "web", "TaskGroups": [{"Name": "a", "Count": 3}], "Meta": {"é": "ü"}})
    metric = freeze({"NodesEvaluated": 1, "Scores": None})
    rows = [
        freeze({"ID": "1", "Job": job, "ClientStatus": "running", "L": [1, 2.5, None, True]}),
        freeze({"Job": job}),  # nothing before or after the shared field
        freeze({"ID": "2", "Job": job}),
        freeze({"Job": job, "Z": {"x": []}}),
        freeze({"ID": "3", "Job": None}),
        {"ID": "4", "Job": dict(job)},  # not frozen: never cached
        freeze({"ID": "5", "Job": freeze({"ID": "other"})}),
        freeze({"ID": "6", "Job": freeze({"ID": "third"})}),  # evicts the oldest entry
        freeze({"ID": "7", "Job": job}),
        freeze({"ID": "8", "Job": job, "Metrics": metric, "X": 1, "Resources": metric}),
        freeze({"Metrics": metric, "Job": job, "AllocatedResources": {"a": [1]}}),
        freeze({"ID": "9", "Job": job, "Metrics": None, "Resources": [metric]}),
    ]
    for row in rows:
        assert encoder.encode(row) == json.dumps(row, separators=(",", ":"))


def test_freeze_and_thaw_keep_values_and_types() -> None:
    value = {"a": [1, {"b": (True, 2.5)}], "c": None, 3: "x", "d": FrozenDict({"e": [1]})}
    frozen = freeze(value)
    assert isinstance(frozen, FrozenDict)
    assert frozen["a"] == (1, FrozenDict({"b": (True, 2.5)}))
    assert isinstance(frozen["a"][0], int) and frozen["a"][1]["b"][0] is True
    assert frozen["3"] == "x"  # JSON object keys are strings
    assert frozen["d"] is value["d"]  # already frozen: reused
    assert thaw(frozen) == {"a": [1, {"b": [True, 2.5]}], "c": None, "3": "x", "d": {"e": [1]}}
    assert type(thaw(frozen)["a"]) is list


def test_freeze_shared_freezes_a_shared_part_once() -> None:
    resources = {"CPU": 100, "Ports": [{"Value": 1}]}
    allocs = [{"ID": str(i), "Resources": resources} for i in range(3)]
    memo: dict[int, tuple[Any, Any]] = {}
    frozen = [freeze_shared(a, memo) for a in allocs]
    assert frozen[0]["Resources"] is frozen[1]["Resources"] is frozen[2]["Resources"]
    assert frozen[0]["Resources"] == freeze(resources)
    assert [f["ID"] for f in frozen] == ["0", "1", "2"]
    # Scalars are kept inline, everything below them frozen: lists become tuples of
    # FrozenDicts, already frozen values are reused, keys become strings.
    done = freeze({"Old": 1})
    row = freeze_shared({"A": None, "B": [{"C": [1, {2: "x"}]}], "D": done, 5: "e"}, {})
    assert type(row) is FrozenDict and row["A"] is None and row["5"] == "e"
    assert type(row["B"]) is tuple and type(row["B"][0]) is FrozenDict
    assert row["B"][0]["C"] == (1, {"2": "x"}) and type(row["B"][0]["C"][1]) is FrozenDict
    assert row["D"] is done


def test_state_db_with_the_earlier_without_rowid_table_still_loads_and_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE rows (tbl TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                           PRIMARY KEY (tbl, key)) WITHOUT ROWID;
        CREATE TABLE indexes (tbl TEXT PRIMARY KEY, idx INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO rows VALUES ('nodes', '["n1"]', '{"ID":"n1"}');
        INSERT INTO indexes VALUES ('nodes', 3), ('_latest', 3);
        """
    )
    db.commit()
    db.close()
    store = StateStore(path, TABLES)
    try:
        assert store.snapshot().get("nodes", ("n1",)) == {"ID": "n1"}
        store.write("Put", lambda txn: txn.put("nodes", ("n1",), {"ID": "n1", "Name": "x"}))
    finally:
        store.close()
    reopened = StateStore(path, TABLES)
    try:
        assert reopened.snapshot().get("nodes", ("n1",)) == {"ID": "n1", "Name": "x"}
        assert reopened.latest_index == 4
    finally:
        reopened.close()
