"""`GET /v1/event/stream` against a real agent process: first line, events caused by
Variables and job writes, topic/namespace filters, replay, errors, ACLs, heartbeats,
python-nomad's reader, and the stream's end when the agent shuts down."""

from __future__ import annotations

import queue
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nomad
import pytest
from agent.jobs_support import NO_DEPLOYMENTS, raw_exec_job, register
from agent.stream.stream_support import END, WAIT_S, StreamReader, summary
from testsupport import ServerProcess, agent_process

from nomadpaas.agent.drivers.rawexec.driver import kill_orphaned_tasks


@pytest.fixture
def fast_agent(tmp_path: Path) -> Iterator[ServerProcess]:
    """An agent whose event streams heartbeat every second."""
    server = agent_process(tmp_path / "agent", log_path=tmp_path / "agent.log")
    server.env = {"NOMADPAAS_AGENT_EVENT_HEARTBEAT_S": "1"}
    server.start()
    try:
        yield server
    finally:
        server.kill()
        kill_orphaned_tasks(str(server.data_dir))


def put_var(agent: ServerProcess, path: str, namespace: str = "default") -> int:
    r = httpx.put(
        f"{agent.url}/v1/var/{path}", params={"namespace": namespace}, json={"Items": {"K": "v"}}
    )
    assert r.status_code == 200, r.text
    return int(r.json()["ModifyIndex"])


def stream(agent: ServerProcess, params: Any = None, token: str | None = None) -> StreamReader:
    reader = StreamReader(agent.url, params, token)
    assert reader.next_line() == {}, "the first line must be {}"
    return reader


def test_first_line_headers_and_variable_events(agent: ServerProcess) -> None:
    reader = stream(agent, {"index": 999_999})  # live only: skip the startup writes
    try:
        assert reader.status == 200 and reader.headers is not None
        assert reader.headers["content-type"] == "application/json"
        assert reader.headers["cache-control"] == "no-cache"
        index = put_var(agent, "apps/web")
        line = reader.next_data()
        assert line["Index"] == index
        (event,) = line["Events"]
        assert event == {
            "Topic": "Variable",
            "Type": "VariableUpdated",
            "Key": "apps/web",
            "Namespace": "default",
            "FilterKeys": None,
            "Index": index,
            "Payload": {
                "Metadata": {
                    "Namespace": "default",
                    "Path": "apps/web",
                    "CreateIndex": index,
                    "CreateTime": event["Payload"]["Metadata"]["CreateTime"],
                    "ModifyIndex": index,
                    "ModifyTime": event["Payload"]["Metadata"]["ModifyTime"],
                },
                "Deleted": False,
            },
        }
        assert httpx.delete(f"{agent.url}/v1/var/apps/web").status_code == 204
        deleted = reader.next_data()["Events"][0]
        assert deleted["Payload"]["Deleted"] is True and deleted["Key"] == "apps/web"
        assert deleted["Index"] > index
    finally:
        reader.close()


def test_job_register_events_and_topic_filters(agent: ServerProcess) -> None:
    n = nomad.Nomad(host="127.0.0.1", port=agent.port, timeout=15)
    everything = stream(agent, {"index": 999_999})
    only_web = stream(
        agent, [("index", "999999"), ("topic", "Job:web"), ("topic", "Allocation:web")]
    )
    try:
        register(n, raw_exec_job("other", count=1, update=NO_DEPLOYMENTS))
        out = register(n, raw_exec_job("web", count=1, update=NO_DEPLOYMENTS))

        seen = everything.events_until(
            lambda e: e["Topic"] == "Allocation" and e["Key"] != "" and "web" in e["FilterKeys"]
        )
        job = next(e for e in seen if e["Topic"] == "Job" and e["Key"] == "web")
        assert job["Type"] == "JobRegistered" and job["Namespace"] == "default"
        assert job["FilterKeys"] is None and job["Payload"]["Job"]["ID"] == "web"
        assert job["Index"] == out["JobModifyIndex"]
        evals = [e for e in seen if e["Topic"] == "Evaluation" and e["Key"] == out["EvalID"]]
        assert evals and evals[0]["Type"] == "JobRegistered"
        assert evals[0]["FilterKeys"][0] == "web"
        alloc = seen[-1]
        assert alloc["Type"] == "PlanResult" and alloc["Payload"]["Allocation"]["Job"] is None
        assert alloc["FilterKeys"][0] == "web"
        assert alloc["Payload"]["Allocation"]["JobID"] == "web"

        # The filtered stream sees web's Job and Allocation events and nothing else.
        web_seen = only_web.events_until(lambda e: e["Topic"] == "Allocation")
        assert {(e["Topic"]) for e in web_seen} <= {"Job", "Allocation"}
        assert all(e["Key"] == "web" or "web" in (e["FilterKeys"] or []) for e in web_seen)
        assert any(e["Topic"] == "Job" and e["Index"] == job["Index"] for e in web_seen)
    finally:
        everything.close()
        only_web.close()


def test_namespace_filtering(agent: ServerProcess) -> None:
    readers = {
        ns: stream(
            agent, {"index": 999_999, "topic": "Variable", **({"namespace": ns} if ns else {})}
        )
        for ns in ("", "prod", "*")
    }
    try:
        i_prod = put_var(agent, "a", namespace="prod")
        i_default = put_var(agent, "b", namespace="default")
        assert [e["Index"] for e in readers[""].next_data()["Events"]] == [i_default]
        assert [e["Index"] for e in readers["prod"].next_data()["Events"]] == [i_prod]
        assert readers["*"].next_data()["Index"] == i_prod
        assert readers["*"].next_data()["Index"] == i_default
    finally:
        for reader in readers.values():
            reader.close()


def test_replay_from_index(agent: ServerProcess) -> None:
    indexes = [put_var(agent, f"replay/{i}") for i in range(3)]
    reader = stream(agent, {"index": indexes[1], "topic": "Variable"})
    try:
        assert reader.next_data()["Index"] == indexes[1]  # N itself is included
        assert reader.next_data()["Index"] == indexes[2]
        live = put_var(agent, "replay/live")
        assert reader.next_data()["Index"] == live
    finally:
        reader.close()
    # index=0 replays the whole buffer, the agent's own node registration included.
    whole = stream(agent, {"index": 0})
    try:
        first = whole.next_data()
        assert first["Events"][0]["Topic"] == "Node"
        assert first["Events"][0]["Type"] == "NodeRegistration"
        assert first["Events"][0]["Payload"]["Node"]["SecretID"] == ""
    finally:
        whole.close()


@pytest.mark.parametrize(
    ("method", "query", "status", "text"),
    [
        ("GET", "topic=Job:a:b", 400,
         "Invalid topic query: error parsing topics: Invalid key value pair for topic, "
         "topic: Job:a:b"),
        ("GET", "index=abc", 400,
         'Unable to parse index: strconv.Atoi: parsing "abc": invalid syntax'),
        ("POST", "", 405, "Invalid method"),
        ("PUT", "", 405, "Invalid method"),
    ],
)  # fmt: skip
def test_bad_requests(
    agent: ServerProcess, method: str, query: str, status: int, text: str
) -> None:
    r = httpx.request(method, f"{agent.url}/v1/event/stream?{query}", timeout=10)
    assert (r.status_code, r.text) == (status, text)


def test_acl_token_required(acl_agent: tuple[ServerProcess, str]) -> None:
    server, token = acl_agent
    url = f"{server.url}/v1/event/stream"
    assert httpx.get(url, timeout=10).status_code == 403
    assert httpx.get(url, headers={"X-Nomad-Token": "nope"}, timeout=10).status_code == 403
    reader = stream(server, {"index": 999_999}, token=token)
    try:
        r = httpx.put(
            f"{server.url}/v1/var/acl/x",
            json={"Items": {"a": "b"}},
            headers={"X-Nomad-Token": token},
        )
        assert r.status_code == 200
        assert reader.next_data()["Events"][0]["Key"] == "acl/x"
    finally:
        reader.close()


def test_heartbeats_every_interval(fast_agent: ServerProcess) -> None:
    reader = stream(fast_agent, {"index": 999_999})
    try:
        started = time.monotonic()
        beats = [reader.next_line(timeout=10) for _ in range(2)]
        assert beats == [{}, {}]
        elapsed = time.monotonic() - started
        assert 1.0 <= elapsed < 10, elapsed  # two 1 s beats, not a burst
    finally:
        reader.close()


def test_python_nomad_get_stream(fast_agent: ServerProcess) -> None:
    n = nomad.Nomad(host="127.0.0.1", port=fast_agent.port, timeout=15)
    start = put_var(fast_agent, "before")  # any index: the replay starts here
    thread, exit_event, events = n.event.stream.get_stream(index=start, topic=["Job:x"])
    thread.start()
    try:
        out = register(n, raw_exec_job("x", count=1, update=NO_DEPLOYMENTS))
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + WAIT_S
        while not any(e["Key"] == "x" and e["Topic"] == "Job" for e in got):
            assert time.monotonic() < deadline, f"no Job:x event; saw {summary(got)}"
            try:
                got += events.get(timeout=1)["Events"]
            except queue.Empty:
                pass
        assert all(e["Key"] == "x" for e in got)
        assert any(e["Index"] == out["JobModifyIndex"] for e in got)
    finally:
        exit_event.set()  # checked after the next line: a 1 s heartbeat at the latest
        thread.join(10)
    assert not thread.is_alive()


def test_stream_ends_when_the_agent_shuts_down(agent: ServerProcess) -> None:
    reader = stream(agent, {"index": 999_999})
    assert agent.proc is not None
    started = time.monotonic()
    agent.proc.send_signal(signal.SIGTERM)
    try:
        assert reader.ended.wait(15), "the stream outlived the agent"
        # A clean end of body, not a reset: the last item queued is END, no error.
        items = []
        while not reader.lines.empty():
            items.append(reader.lines.get_nowait())
        assert items and items[-1] is END
        assert not any(isinstance(i, Exception) for i in items), items
        agent.proc.wait(15)
        assert time.monotonic() - started < 15
    finally:
        reader.close()
