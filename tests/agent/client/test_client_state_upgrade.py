"""An agent upgraded in place: its client state in the old file-per-row layout is imported
by the SQLite state DB, and the new client re-attaches to the task the old one started."""

from __future__ import annotations

import json
from pathlib import Path

from agent.client.client_support import (
    NODE,
    FakeRPC,
    event_types,
    make_alloc,
    pid_alive,
    pinned_tracker,
    py_task,
    wait_for,
)

from nomadpaas.agent.client.client import Client, ClientConfig
from nomadpaas.agent.client.state import DB_FILE

SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(300)\n"


def rewrite_as_old_layout(client: Client, data_dir: Path) -> None:
    """What the pre-SQLite agent left on disk: allocs/<id>/alloc.json + task-<name>.json."""
    saved = client.state_db.all_allocs()
    client.state_db.close()
    for suffix in ("", "-wal", "-shm"):
        (data_dir / "client" / (DB_FILE + suffix)).unlink(missing_ok=True)
    for s in saved:
        alloc_dir = data_dir / "client" / "state" / "allocs" / str(s.alloc["ID"])
        alloc_dir.mkdir(parents=True)
        (alloc_dir / "alloc.json").write_text(json.dumps(s.alloc))
        for name, local in s.tasks.items():
            (alloc_dir / f"task-{name}.json").write_text(json.dumps(local.to_json()))


def test_upgraded_agent_reattaches_to_tasks_saved_in_the_old_layout(tmp_path: Path) -> None:
    rpc = FakeRPC()
    alloc = make_alloc([py_task("web", SLEEPER)])
    rpc.put(alloc)
    cfg = ClientConfig(data_dir=tmp_path, node=NODE, tracker_factory=pinned_tracker)
    clients: list[Client] = []
    try:
        first = Client(cfg, rpc)
        clients.append(first)
        first.start()
        wait_for(lambda: rpc.get(alloc["ID"]).get("ClientStatus") == "running", what="running")
        runner = first.runner(alloc["ID"])
        assert runner is not None
        pid = runner.tasks["web"].main_pid()
        assert pid is not None
        first.shutdown()
        assert pid_alive(pid), "agent shutdown must not kill tasks"
        rewrite_as_old_layout(first, tmp_path)

        second = Client(cfg, rpc)  # the upgraded agent over the same data dir
        clients.append(second)
        second.start()
        assert not (tmp_path / "client" / "state").exists(), "old tree removed after import"
        restored = second.runner(alloc["ID"])
        assert restored is not None
        assert restored.tasks["web"].main_pid() == pid
        state = restored.task_states()["web"]
        assert state["State"] == "running"
        assert event_types(state).count("Started") == 1  # re-attached, not started again
        rpc.stop(alloc["ID"])
        wait_for(lambda: rpc.get(alloc["ID"]).get("ClientStatus") == "complete", what="stopped")
        assert not pid_alive(pid)
    finally:
        if clients:
            clients[-1].destroy_all()
        for c in clients:
            c.shutdown()
