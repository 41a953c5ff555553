"""The `/v1/client/*` endpoints in process (uvicorn in a thread, httpx) over a real client,
driver and logmon fed by an in-memory server: logs framed and plain, errors and their
codes, fs ls/stat/cat/readat/stream, restart, signal and stats."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from agent.client.client_support import (
    NODE,
    FakeRPC,
    event_types,
    make_alloc,
    pinned_tracker,
    py_task,
    wait_for,
)
from testsupport import free_port, wait_http

from nomadpaas.agent.client.client import Client, ClientConfig
from nomadpaas.agent.http import client_alloc_endpoint, client_fs_endpoint
from nomadpaas.agent.http.server import HTTPDeps, Router, build_app
from nomadpaas.agent.server.state.state_store import StateStore
from nomadpaas.agent.server.variables_endpoint import Variables

PRINTER = (
    "import sys, time\n"
    "for i in range(5):\n"
    "    print('line', i, flush=True)\n"
    "print('oops', file=sys.stderr, flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[httpx.Client, Client, FakeRPC, dict[str, Any]]]:
    rpc = FakeRPC()
    alloc = make_alloc([py_task("web", PRINTER)])
    rpc.put(alloc)
    client = Client(ClientConfig(tmp_path, NODE, tracker_factory=pinned_tracker), rpc)
    client.start()
    store = StateStore(None)
    router = Router()
    client_fs_endpoint.register(router)
    client_alloc_endpoint.register(router)
    deps = HTTPDeps(
        store=store, variables=Variables(store), agent_self=dict, node_id=NODE["ID"],
        acl_token=None, extra={"client": client},
    )  # fmt: skip
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(build_app(router, deps), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=base, timeout=10)
    try:
        wait_http(base + "/v1/client/fs/ls/x")
        runner = client.runner(alloc["ID"])
        assert runner is not None
        wait_for(lambda: runner.client_status()[0] == "running", what="running")
        yield http, client, rpc, alloc
    finally:
        http.close()
        server.should_exit = True
        thread.join(10)
        client.destroy_all()
        client.shutdown()
        store.close()


def frames(body: bytes) -> list[dict[str, Any]]:
    """Decode back-to-back JSON objects (no separators)."""
    decoder = json.JSONDecoder()
    text, pos, out = body.decode(), 0, []
    while pos < len(text):
        obj, pos = decoder.raw_decode(text, pos)
        out.append(obj)
    return out


def test_logs_framed_and_plain(setup: Any) -> None:
    http, _, _, alloc = setup
    url = f"/v1/client/fs/logs/{alloc['ID']}"

    def plain() -> str:
        return str(http.get(url, params={"task": "web", "type": "stdout", "plain": "true"}).text)

    wait_for(lambda: "line 4" in plain(), what="all lines logged")
    r = http.get(url, params={"task": "web", "type": "stdout", "plain": "true"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.text == "".join(f"line {i}\n" for i in range(5))
    r = http.get(url, params={"task": "web", "type": "stdout"})
    assert r.headers["content-type"] == "application/json"
    data = [f for f in frames(r.content) if f.get("Data")]
    assert b"".join(base64.b64decode(f["Data"]) for f in data).decode().startswith("line 0\n")
    assert data[0]["File"] == "alloc/logs/web.stdout.0"
    r = http.get(url, params={"task": "web", "type": "stderr", "plain": "True"})
    assert r.text == "oops\n"
    r = http.get(url, params={"task": "web", "type": "stdout", "plain": "1", "origin": "end",
                              "offset": "7"})  # fmt: skip
    assert r.text == "line 4\n"


@pytest.mark.parametrize(
    ("params", "code", "text"),
    [
        ({"type": "stdout"}, 400, "must provide task name"),
        ({"task": "web"}, 400, "must provide log type (stdout/stderr)"),
        ({"task": "web", "type": "stdout", "origin": "middle"}, 400,
         "origin must be start or end"),
        ({"task": "nope", "type": "stdout"}, 400, 'unknown task name "nope"'),
    ],
)  # fmt: skip
def test_logs_errors(setup: Any, params: dict[str, str], code: int, text: str) -> None:
    http, _, _, alloc = setup
    r = http.get(f"/v1/client/fs/logs/{alloc['ID']}", params=params)
    assert (r.status_code, r.text) == (code, text)


def test_unknown_alloc_is_404(setup: Any) -> None:
    http = setup[0]
    r = http.get("/v1/client/fs/logs/abc", params={"task": "web", "type": "stdout"})
    assert (r.status_code, r.text) == (404, 'Unknown allocation "abc"')
    r = http.post("/v1/client/allocation/abc/restart")
    assert r.status_code == 404


def test_fs_ls_stat_cat_readat_stream(setup: Any) -> None:
    http, _, _, alloc = setup
    aid = alloc["ID"]
    names = {e["Name"] for e in http.get(f"/v1/client/fs/ls/{aid}", params={"path": "/"}).json()}
    assert {"alloc", "web"} <= names
    st = http.get(f"/v1/client/fs/stat/{aid}", params={"path": "alloc/logs/web.stdout.0"}).json()
    assert st["Name"] == "web.stdout.0" and st["IsDir"] is False
    wait_for(
        lambda: "line 4" in http.get(f"/v1/client/fs/cat/{aid}",
                                     params={"path": "alloc/logs/web.stdout.0"}).text,
        what="cat",
    )  # fmt: skip
    readat = {"path": "alloc/logs/web.stdout.0", "offset": "7", "limit": "6"}
    r = http.get(f"/v1/client/fs/readat/{aid}", params=readat)
    assert r.text == "line 1"
    r = http.get(f"/v1/client/fs/stream/{aid}",
                 params={"path": "alloc/logs/web.stdout.0", "follow": "false"})  # fmt: skip
    data = b"".join(base64.b64decode(f["Data"]) for f in frames(r.content) if f.get("Data"))
    assert data.startswith(b"line 0\n")
    r = http.get(f"/v1/client/fs/cat/{aid}", params={"path": "../../etc/passwd"})
    assert r.status_code == 400
    r = http.get(f"/v1/client/fs/stat/{aid}", params={"path": "nope"})
    assert r.status_code == 404


def test_restart_signal_and_stats(setup: Any) -> None:
    http, client, _, alloc = setup
    aid = alloc["ID"]
    runner = client.runner(aid)
    stats = http.get(f"/v1/client/allocation/{aid}/stats").json()
    assert stats["Tasks"]["web"]["ResourceUsage"]["MemoryStats"]["RSS"] > 0
    r = http.post(f"/v1/client/allocation/{aid}/restart")  # no body, as python-nomad sends
    assert r.status_code == 200 and r.json() == {"Index": 0}
    wait_for(lambda: event_types(runner.task_states()["web"])[-1] == "Started", what="restart")
    r = http.post(f"/v1/client/allocation/{aid}/restart", json={"TaskName": "nope"})
    assert r.status_code == 500 and "nope" in r.text
    r = http.post(f"/v1/client/allocation/{aid}/signal", json={"Task": "web", "Signal": "SIGTERM"})
    assert r.status_code == 200
    wait_for(lambda: runner.task_states()["web"]["Restarts"] == 2, what="signal killed task")


def test_gc_only_collects_terminal_allocs(setup: Any) -> None:
    http, client, rpc, alloc = setup
    aid = alloc["ID"]
    r = http.get(f"/v1/client/allocation/{aid}/gc")
    assert (r.status_code, r.text) == (
        500,
        "No such allocation on client or allocation not eligible for GC",
    )
    runner = client.runner(aid)
    rpc.stop(aid)
    wait_for(lambda: runner.is_done(), what="stopped")
    assert http.get(f"/v1/client/allocation/{aid}/gc").status_code == 200
    assert client.runner(aid) is None and not Path(runner.alloc_dir.root).exists()
    r = http.get(f"/v1/client/fs/ls/{aid}")
    assert r.status_code == 404
    assert http.put("/v1/client/gc").status_code == 200
