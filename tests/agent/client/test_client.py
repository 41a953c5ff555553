"""The client (node) with an in-memory server and the real raw_exec driver: runs, stops
and forgets allocations, batches updates, leaves tasks running on shutdown and
re-attaches to them (and collects exits that happened meanwhile) after a restart."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agent.client.client_support import (
    FAST_RESTARTS,
    NODE,
    FakeRPC,
    event_types,
    make_alloc,
    pid_alive,
    pinned_tracker,
    py_task,
    read_logs,
    wait_for,
)

from nomadpaas.agent.client.client import Client, ClientConfig, _mutable
from nomadpaas.agent.server.state.frozen import freeze

TICKER = (
    "import time\n"
    "i = 0\n"
    "while True:\n"
    "    print('tick', i, flush=True)\n"
    "    i += 1\n"
    "    time.sleep(0.1)\n"
)

MakeClient = Callable[[], Client]


@pytest.fixture
def rpc() -> FakeRPC:
    return FakeRPC()


@pytest.fixture
def make_client(tmp_path: Path, rpc: FakeRPC) -> Iterator[MakeClient]:
    clients: list[Client] = []

    def make() -> Client:
        cfg = ClientConfig(data_dir=tmp_path, node=NODE, tracker_factory=pinned_tracker)
        client = Client(cfg, rpc)
        clients.append(client)
        client.start()
        return client

    try:
        yield make
    finally:
        # The last client kills whatever is still running, then everyone shuts down.
        if clients:
            clients[-1].destroy_all()
        for c in clients:
            c.shutdown()


def server_status(rpc: FakeRPC, alloc_id: str) -> str:
    return str(rpc.get(alloc_id).get("ClientStatus"))


def test_client_runs_new_alloc_and_stops_it(rpc: FakeRPC, make_client: MakeClient) -> None:
    alloc = make_alloc([py_task("web", TICKER)])
    rpc.put(alloc)
    client = make_client()
    wait_for(lambda: server_status(rpc, alloc["ID"]) == "running", what="running on server")
    runner = client.runner(alloc["ID"])
    assert runner is not None
    assert rpc.get(alloc["ID"])["ClientDescription"] == "Tasks are running"
    wait_for(lambda: "tick 1" in read_logs(runner.alloc_dir.root, "web"), what="output")
    rpc.stop(alloc["ID"])
    wait_for(lambda: server_status(rpc, alloc["ID"]) == "complete", what="complete on server")
    states = rpc.get(alloc["ID"])["TaskStates"]
    assert event_types(states["web"])[-3:] == ["Killing", "Terminated", "Killed"]
    # The allocation is still known: its logs stay readable.
    assert "tick 0" in read_logs(runner.alloc_dir.root, "web")


def test_client_destroys_alloc_the_server_forgot(rpc: FakeRPC, make_client: MakeClient) -> None:
    alloc = make_alloc([py_task("web", TICKER)])
    rpc.put(alloc)
    client = make_client()
    wait_for(lambda: server_status(rpc, alloc["ID"]) == "running", what="running")
    runner = client.runner(alloc["ID"])
    assert runner is not None
    pid = runner.tasks["web"].main_pid()
    assert pid is not None
    rpc.delete(alloc["ID"])
    wait_for(lambda: not os.path.exists(runner.alloc_dir.root), what="alloc dir removed")
    assert client.runner(alloc["ID"]) is None
    wait_for(lambda: not pid_alive(pid), what="task killed")
    assert client.state_db.all_allocs() == []


def test_client_ignores_terminal_allocs_it_never_ran(
    rpc: FakeRPC, make_client: MakeClient, tmp_path: Path
) -> None:
    alloc = make_alloc([py_task("web", TICKER)])
    alloc["DesiredStatus"] = "stop"
    rpc.put(alloc)
    live = make_alloc([py_task("web", "print('hi')")], job_type="batch")
    rpc.put(live)
    client = make_client()
    wait_for(lambda: server_status(rpc, live["ID"]) == "complete", what="batch alloc done")
    assert client.runner(alloc["ID"]) is None
    assert not (tmp_path / "alloc" / alloc["ID"]).exists()
    # Stopped before it ever ran: reported complete, or the server keeps it pending forever.
    wait_for(lambda: server_status(rpc, alloc["ID"]) == "complete", what="stopped alloc done")
    [update] = [u for u in rpc.updates if u["ID"] == alloc["ID"]]
    assert update["ClientDescription"] == "All tasks have completed"


def test_updates_are_coalesced(rpc: FakeRPC, make_client: MakeClient) -> None:
    client = make_client()
    before = rpc.update_calls
    for i in range(50):
        client._queue_update({"ID": "x", "ClientStatus": "running", "N": i}, False)
    time.sleep(0.6)
    calls = rpc.update_calls - before
    assert 1 <= calls <= 4
    assert [u for u in rpc.updates if u["ID"] == "x"][-1]["N"] == 49


class SlowRPC(FakeRPC):
    """Each update_allocs takes WRITE_S and is timed: a slow server widens the client's
    coalescing window (URGENT_COALESCE_COST_FACTOR times the last write)."""

    WRITE_S = 0.25

    def __init__(self) -> None:
        super().__init__()
        self.call_times: list[float] = []

    def update_allocs(self, updates: list[dict[str, Any]]) -> int:
        time.sleep(self.WRITE_S)
        self.call_times.append(time.monotonic())
        return super().update_allocs(updates)


def test_a_burst_is_sent_once_it_is_over_not_at_the_end_of_the_window(tmp_path: Path) -> None:
    """After a slow write the window is 4 x 0.25 s; a burst of updates that ends well
    before it goes 15 ms after its last update, in one call, instead of ~1 s later."""
    rpc = SlowRPC()
    client = Client(ClientConfig(data_dir=tmp_path, node=NODE, sync_interval_s=5.0), rpc)
    client.start()
    try:
        client._queue_update({"ID": "a", "ClientStatus": "pending"}, True)
        wait_for(lambda: rpc.update_calls == 1, what="the first (slow) write")
        for i in range(10):
            client._queue_update({"ID": f"b{i}", "ClientStatus": "running"}, True)
            time.sleep(0.002)
        burst_end = time.monotonic()
        wait_for(lambda: rpc.update_calls == 2, what="the burst's write")
        assert rpc.call_times[1] - SlowRPC.WRITE_S - burst_end < 0.5  # window: ~1 s
        assert [u["ID"] for u in rpc.updates[1:]] == [f"b{i}" for i in range(10)]
    finally:
        client.shutdown()


def test_shutdown_leaves_tasks_running_and_restart_reattaches(
    rpc: FakeRPC, make_client: MakeClient
) -> None:
    alloc = make_alloc([py_task("web", TICKER)])
    rpc.put(alloc)
    first = make_client()
    wait_for(lambda: server_status(rpc, alloc["ID"]) == "running", what="running")
    runner = first.runner(alloc["ID"])
    assert runner is not None
    pid = runner.tasks["web"].main_pid()
    assert pid is not None
    root = runner.alloc_dir.root
    first.shutdown()
    time.sleep(0.5)
    assert pid_alive(pid), "agent shutdown must not kill tasks"
    logged = len(read_logs(root, "web"))

    second = make_client()  # a new driver and logmon over the same data dir
    restored = second.runner(alloc["ID"])
    assert restored is not None
    task_ids = second.driver.task_ids  # type: ignore[attr-defined]
    wait_for(lambda: task_ids() == [f"{alloc['ID']}/web"], what="re-attached by the driver")
    assert restored.tasks["web"].main_pid() == pid
    state = restored.task_states()["web"]
    assert state["State"] == "running"
    assert event_types(state).count("Started") == 1  # not started a second time
    wait_for(lambda: len(read_logs(root, "web")) > logged + 20, what="logs continue")
    lines = [ln for ln in read_logs(root, "web").splitlines() if ln.startswith("tick")]
    numbers = [int(ln.split()[1]) for ln in lines]
    assert numbers == list(range(len(numbers))), "no line lost or duplicated across restart"
    rpc.stop(alloc["ID"])
    wait_for(lambda: server_status(rpc, alloc["ID"]) == "complete", what="stopped")
    assert not pid_alive(pid)


def test_exit_while_agent_down_is_collected(rpc: FakeRPC, make_client: MakeClient) -> None:
    code = "import sys, time\nprint('working', flush=True)\ntime.sleep(1.5)\nsys.exit(3)"
    alloc = make_alloc(
        [py_task("job", code)], job_type="batch", restart={**FAST_RESTARTS, "Attempts": 0}
    )
    rpc.put(alloc)
    first = make_client()
    wait_for(lambda: server_status(rpc, alloc["ID"]) == "running", what="running")
    runner = first.runner(alloc["ID"])
    assert runner is not None
    pid = runner.tasks["job"].main_pid()
    assert pid is not None
    first.shutdown()
    wait_for(lambda: not pid_alive(pid), what="task exited while the agent was down")
    make_client()
    wait_for(lambda: server_status(rpc, alloc["ID"]) == "failed", what="exit collected")
    state = rpc.get(alloc["ID"])["TaskStates"]["job"]
    assert event_types(state)[-2:] == ["Terminated", "Not Restarting"]
    assert state["Events"][-2]["ExitCode"] == 3
    assert event_types(state).count("Started") == 1


def test_alloc_stopped_while_agent_down_is_killed_after_restart(
    rpc: FakeRPC, make_client: MakeClient
) -> None:
    alloc = make_alloc([py_task("web", TICKER)])
    rpc.put(alloc)
    first = make_client()
    wait_for(lambda: server_status(rpc, alloc["ID"]) == "running", what="running")
    runner = first.runner(alloc["ID"])
    assert runner is not None
    pid = runner.tasks["web"].main_pid()
    assert pid is not None
    first.shutdown()
    rpc.stop(alloc["ID"])  # the server stops it while no client watches
    make_client()
    wait_for(lambda: server_status(rpc, alloc["ID"]) == "complete", what="stopped after restore")
    wait_for(lambda: not pid_alive(pid), what="re-attached task killed")
    states = rpc.get(alloc["ID"])["TaskStates"]
    assert event_types(states["web"])[-3:] == ["Killing", "Terminated", "Killed"]


def test_runner_allocation_shares_the_server_rows_read_only_values() -> None:
    # The server's frozen row: a new runner's copy is a plain dict of its own, and its
    # values (Job, resources, metrics) are the row's, not copies of them.
    alloc = make_alloc([py_task("web", TICKER)])
    alloc["AllocatedResources"] = {"Shared": {"DiskMB": 300, "Ports": []}}
    row = freeze(alloc)
    copied = _mutable(row)
    assert type(copied) is dict and copied == row
    assert copied["Job"] is row["Job"]
    assert copied["AllocatedResources"] is row["AllocatedResources"]
    assert copied["DesiredTransition"] is row["DesiredTransition"]
    copied["DesiredStatus"] = "stop"  # the top level is the runner's own
    assert row["DesiredStatus"] == "run"
