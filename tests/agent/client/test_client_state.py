"""The client state DB: rows round-trip, a deleted allocation is never resurrected."""

from __future__ import annotations

from pathlib import Path

from nomadpaas.agent.client.state import ClientStateDB, LocalTaskState


def test_rows_round_trip_and_delete(tmp_path: Path) -> None:
    db = ClientStateDB(tmp_path)
    db.put_alloc({"ID": "a1", "Job": {"ID": "web"}})
    db.put_task("a1", "web", LocalTaskState({"State": "running"}, {"TaskID": "x"}, ["task_dir"]))
    db.put_task("gone", "web", LocalTaskState({"State": "running"}))  # no alloc: not created
    [restored] = db.all_allocs()
    assert restored.alloc == {"ID": "a1", "Job": {"ID": "web"}}
    assert restored.tasks["web"].handle == {"TaskID": "x"}
    assert restored.tasks["web"].hooks_done == ["task_dir"]
    assert not (db.root / "gone").exists()
    db.delete_alloc("a1")
    db.put_task("a1", "web", LocalTaskState({"State": "dead"}))  # deleted: not resurrected
    assert db.all_allocs() == []
