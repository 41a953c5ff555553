"""Durability: everything acknowledged survives kill -9; the index keeps rising."""

from __future__ import annotations

import httpx
import nomad
from testsupport import ServerProcess


def test_kill_9_loses_nothing_acknowledged(agent: ServerProcess) -> None:
    n = nomad.Nomad(host="127.0.0.1", port=agent.port, timeout=10)
    written = {}
    for i in range(30):
        out = n.variable.create_variable(f"apps/v{i}", {"Items": {"i": str(i)}})
        written[out["Path"]] = out
    n.variable.delete_variable("apps/v0")
    del written["apps/v0"]
    node_id = n.nodes.get_nodes()[0]["ID"]
    last_index = int(httpx.get(f"{agent.url}/v1/vars").headers["X-Nomad-Index"])

    agent.kill()  # SIGKILL: no shutdown code runs
    agent.start()

    n = nomad.Nomad(host="127.0.0.1", port=agent.port, timeout=10)
    listed = n.variables.get_variables(prefix="apps/")
    assert {v["Path"] for v in listed} == set(written)
    for path, out in written.items():
        again = n.variable.get_variable(path)
        assert again["Items"] == out["Items"]
        assert again["ModifyIndex"] == out["ModifyIndex"]
    assert n.nodes.get_nodes()[0]["ID"] == node_id
    after = n.variable.create_variable("apps/after", {"Items": {"a": "b"}})
    assert after["ModifyIndex"] > last_index


def test_sigterm_shuts_down_cleanly_and_releases_parked_polls(agent: ServerProcess) -> None:
    import signal
    import threading
    import time

    index = httpx.get(f"{agent.url}/v1/vars").headers["X-Nomad-Index"]
    answered: list[int] = []

    def poll() -> None:
        r = httpx.get(f"{agent.url}/v1/vars", params={"index": index, "wait": "60s"}, timeout=90)
        answered.append(r.status_code)

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.5)
    started = time.monotonic()
    agent.kill(signal.SIGTERM)
    t.join(30)
    assert agent.proc is not None and agent.proc.returncode == 0
    assert time.monotonic() - started < 10
    assert answered == [200]
    # A clean stop keeps the data dir (it was given) and restarts fine.
    assert (agent.data_dir / "server" / "state.db").exists()
    agent.start()
    assert httpx.get(f"{agent.url}/v1/vars").status_code == 200
