"""Blocking queries over HTTP: `?index=&wait=` parks, wakes on a write, times out."""

from __future__ import annotations

import threading
import time

import httpx
from testsupport import ServerProcess


def test_list_blocks_until_a_write(agent: ServerProcess) -> None:
    first = httpx.get(f"{agent.url}/v1/vars")
    index = int(first.headers["X-Nomad-Index"])
    result: dict[str, httpx.Response] = {}

    def poll() -> None:
        result["r"] = httpx.get(
            f"{agent.url}/v1/vars", params={"index": index, "wait": "30s"}, timeout=60
        )

    t = threading.Thread(target=poll)
    started = time.monotonic()
    t.start()
    time.sleep(0.5)
    assert t.is_alive(), "the poll should be parked"
    write = httpx.put(f"{agent.url}/v1/var/wake", json={"Items": {"a": "b"}})
    t.join(30)
    assert not t.is_alive()
    r = result["r"]
    assert time.monotonic() - started < 20
    assert int(r.headers["X-Nomad-Index"]) == int(write.headers["X-Nomad-Index"]) > index
    assert [v["Path"] for v in r.json()] == ["wake"]


def test_wait_times_out_with_same_index(agent: ServerProcess) -> None:
    httpx.put(f"{agent.url}/v1/var/x", json={"Items": {"a": "b"}})
    current = httpx.get(f"{agent.url}/v1/var/x")
    index = current.headers["X-Nomad-Index"]
    started = time.monotonic()
    r = httpx.get(f"{agent.url}/v1/var/x", params={"index": index, "wait": "1s"}, timeout=30)
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    assert r.headers["X-Nomad-Index"] == index
    assert 0.9 <= elapsed < 10


def test_single_variable_wakes_only_on_its_change(agent: ServerProcess) -> None:
    x = httpx.put(f"{agent.url}/v1/var/x", json={"Items": {"v": "1"}}).json()
    result: dict[str, httpx.Response] = {}

    def poll() -> None:
        result["r"] = httpx.get(
            f"{agent.url}/v1/var/x", params={"index": x["ModifyIndex"], "wait": "30s"}, timeout=60
        )

    t = threading.Thread(target=poll)
    t.start()
    httpx.put(f"{agent.url}/v1/var/other", json={"Items": {"v": "1"}})
    time.sleep(0.5)
    assert t.is_alive(), "a write to another variable must not answer this poll"
    httpx.put(f"{agent.url}/v1/var/x", json={"Items": {"v": "2"}})
    t.join(30)
    assert result["r"].json()["Items"] == {"v": "2"}


def test_bad_blocking_parameters(agent: ServerProcess) -> None:
    r = httpx.get(f"{agent.url}/v1/vars", params={"index": "1", "wait": "soon"})
    assert (r.status_code, r.text) == (400, "Invalid wait time")
    r = httpx.get(f"{agent.url}/v1/vars", params={"index": "-3"})
    assert (r.status_code, r.text) == (400, "Invalid index")
