"""Issue 3's job lifecycle end to end with the agent's client running the tasks: an
http.server service is updated (destructive replace), scaled 1→3→1, reverted, stopped and
purged while every step is checked on the OS (processes, ports) as well as in the API; a
parameterized batch job is dispatched twice and each child ends with its exit code; a
failing task restarts per policy and ends `Not Restarting`; `logs -f` sees lines arrive."""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import nomad
import pytest
from agent.jobs_support import NO_DEPLOYMENTS, client, wait_eval
from agent.test_conformance_client import answers, http_port, server_pids, wait_for
from nomad.api.exceptions import URLNotFoundNomadException
from testsupport import ServerProcess

SERVE_ARGS = ["-u", "-m", "http.server", "${NOMAD_PORT_http}", "--bind", "127.0.0.1"]
STOP_EVENTS = ["Killing", "Terminated", "Killed"]
NS_PER_S = 10**9


def web_job(count: int = 1, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`python3 -m http.server $NOMAD_PORT_http`, no update block (no deployment gating)."""
    task: dict[str, Any] = {
        "Name": "server",
        "Driver": "raw_exec",
        "Config": {"command": sys.executable, "args": SERVE_ARGS},
        "Resources": {"CPU": 20, "MemoryMB": 32},
    }
    if env is not None:
        task["Env"] = env
    return {
        "ID": "web",
        "Type": "service",
        "Update": NO_DEPLOYMENTS,
        "TaskGroups": [
            {
                "Name": "app",
                "Count": count,
                "Networks": [{"DynamicPorts": [{"Label": "http"}]}],
                "Tasks": [task],
            }
        ],
    }


def running_allocs(n: nomad.Nomad, job_id: str, count: int, version: int) -> list[dict[str, Any]]:
    """Exactly `count` wanted allocations of `version`, all running; full objects by name."""

    def check() -> list[dict[str, Any]] | None:
        live = [a for a in n.job.get_allocations(job_id) if a["DesiredStatus"] == "run"]
        ok = len(live) == count and all(
            a["ClientStatus"] == "running" and a["JobVersion"] == version for a in live
        )
        return sorted(live, key=lambda a: a["Name"]) if ok else None

    stubs: list[dict[str, Any]] = wait_for(check, what=f"{count} running at v{version}")
    return [n.allocation.get_allocation(a["ID"]) for a in stubs]


def serving_pid(port: int) -> int:
    """The one live http.server process on `port`, once it answers."""
    wait_for(lambda: answers(port), what=f"answer on {port}")
    (pid,) = server_pids(port)
    return pid


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (item.decode(errors="replace").partition("=") for item in raw if item)
    return {k: v for k, _, v in pairs}


def wait_stopped(n: nomad.Nomad, alloc_ids: list[str]) -> list[dict[str, Any]]:
    """Each allocation ends `complete` with the stop sequence as its last events."""

    def check() -> list[dict[str, Any]] | None:
        allocs = [n.allocation.get_allocation(a) for a in alloc_ids]
        return allocs if all(a["ClientStatus"] == "complete" for a in allocs) else None

    allocs: list[dict[str, Any]] = wait_for(check, what="allocations stopped")
    for alloc in allocs:
        state = alloc["TaskStates"]["server"]
        assert [e["Type"] for e in state["Events"]][-3:] == STOP_EVENTS
        assert (state["State"], state["Failed"]) == ("dead", False)
        assert alloc["DesiredStatus"] == "stop"
    return allocs


def scale(n: nomad.Nomad, count: int) -> None:
    body = {"Count": count, "Target": {"Group": "app"}, "Message": f"to {count}"}
    reply = n.job.request("web", "scale", method="post", json=body).json()
    assert wait_eval(n, reply["EvalID"])["Status"] == "complete"


def test_service_update_scale_revert_stop_purge(agent: ServerProcess) -> None:
    n = client(agent)
    n.jobs.register_job({"Job": web_job()})
    (first,) = running_allocs(n, "web", 1, version=0)
    first_port = http_port(first)
    first_pid = serving_pid(first_port)
    assert "VERSION" not in environ(first_pid)

    # Destructive update (Env changed): a new allocation replaces the old one.
    n.jobs.register_job({"Job": web_job(env={"VERSION": "2"})})
    (second,) = running_allocs(n, "web", 1, version=1)
    assert second["ID"] != first["ID"] and second["PreviousAllocation"] == first["ID"]
    (old,) = wait_stopped(n, [first["ID"]])
    assert old["DesiredDescription"] == "alloc is being updated due to job update"
    wait_for(lambda: not server_pids(first_port), what="old server gone")
    second_port = http_port(second)
    assert environ(serving_pid(second_port))["VERSION"] == "2"

    # Scale 1 → 3: three allocations, three processes, each answering on its own port.
    scale(n, 3)
    three = running_allocs(n, "web", 3, version=2)
    assert [a["Name"] for a in three] == ["web.app[0]", "web.app[1]", "web.app[2]"]
    assert three[0]["ID"] == second["ID"], "a count change keeps the existing allocation"
    ports = [http_port(a) for a in three]
    assert len(set(ports)) == 3
    pids = [serving_pid(p) for p in ports]
    assert len(set(pids)) == 3

    # Scale 3 → 1: the two highest indexes stop and their processes exit.
    scale(n, 1)
    (kept,) = running_allocs(n, "web", 1, version=3)
    assert kept["ID"] == second["ID"]
    for alloc in wait_stopped(n, [a["ID"] for a in three[1:]]):
        assert alloc["DesiredDescription"] == "alloc not needed due to job update"
    for port in ports[1:]:
        wait_for(lambda p=port: not server_pids(p), what=f"server on {port} gone")
    assert answers(second_port)

    # Revert to version 0, guarded by EnforcePriorVersion: the first spec runs again.
    out = n.job.revert_job("web", 0, enforce_prior_version=3)
    assert wait_eval(n, out["EvalID"])["Status"] == "complete"
    (reverted,) = running_allocs(n, "web", 1, version=4)
    assert reverted["ID"] != second["ID"]
    assert reverted["Job"]["TaskGroups"][0]["Tasks"][0]["Env"] in (None, {})
    wait_stopped(n, [second["ID"]])
    reverted_port = http_port(reverted)
    assert "VERSION" not in environ(serving_pid(reverted_port))
    versions = [v["Version"] for v in n.job.get_versions("web")["Versions"]]
    assert versions == [4, 3, 2, 1, 0]

    # Stop: Killing → Terminated → Killed, and the process is gone from the OS.
    out = n.job.deregister_job("web")
    wait_eval(n, out["EvalID"])
    wait_stopped(n, [reverted["ID"]])
    wait_for(lambda: not server_pids(reverted_port), what="stopped server gone")
    assert not answers(reverted_port)
    assert n.job.get_job("web")["Status"] == "dead"
    everything = n.job.get_allocations("web")
    assert len(everything) == 5 and {a["ClientStatus"] for a in everything} == {"complete"}

    # Purge: the job is gone.
    n.job.deregister_job("web", purge=True)
    with pytest.raises(URLNotFoundNomadException) as exc:
        n.job.get_job("web")
    assert exc.value.nomad_resp.text == "job not found"


REPORT_CODE = """
import os, sys
payload = open(os.path.join(os.environ["NOMAD_TASK_DIR"], "input.txt")).read()
print("customer=%s payload=%s" % (os.environ["NOMAD_META_customer"], payload))
sys.exit(int(os.environ["NOMAD_META_CODE"]))
"""


def report_job() -> dict[str, Any]:
    """A parameterized batch job that fails fast: no restarts, no rescheduling."""
    return {
        "ID": "report",
        "Type": "batch",
        "ParameterizedJob": {"Payload": "required", "MetaRequired": ["customer", "code"]},
        "TaskGroups": [
            {
                "Name": "run",
                "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
                "ReschedulePolicy": {"Attempts": 0, "Unlimited": False},
                "Tasks": [
                    {
                        "Name": "main",
                        "Driver": "raw_exec",
                        "Config": {"command": sys.executable, "args": ["-c", REPORT_CODE]},
                        "DispatchPayload": {"File": "input.txt"},
                    }
                ],
            }
        ],
    }


def finished_alloc(n: nomad.Nomad, job_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        allocs = n.job.get_allocations(job_id)
        done = [a for a in allocs if a["ClientStatus"] in ("complete", "failed")]
        return n.allocation.get_allocation(done[0]["ID"]) if done else None

    alloc: dict[str, Any] = wait_for(check, what=f"{job_id} finished")
    return alloc


def test_dispatch_twice_each_child_ends_with_its_exit_code(agent: ServerProcess) -> None:
    n = client(agent)
    assert n.job.register_job("report", {"Job": report_job()})["EvalID"] == ""
    children = {}
    for customer, code in (("acme", "0"), ("globex", "3")):
        payload = base64.b64encode(f"data-for-{customer}".encode()).decode()
        reply = n.job.dispatch_job(
            "report", payload=payload, meta={"customer": customer, "code": code}
        )
        children[customer] = reply["DispatchedJobID"]
    assert len(set(children.values())) == 2

    ok = finished_alloc(n, children["acme"])
    assert (ok["ClientStatus"], ok["ClientDescription"]) == ("complete", "All tasks have completed")
    state = ok["TaskStates"]["main"]
    assert [e["Type"] for e in state["Events"]] == [
        "Received",
        "Task Setup",
        "Started",
        "Terminated",
    ]
    assert (state["State"], state["Failed"], state["Restarts"]) == ("dead", False, 0)
    assert state["Events"][-1]["ExitCode"] == 0
    assert state["Events"][-1]["Details"]["exit_code"] == "0"
    out = n.client.stream_logs.stream(ok["ID"], "main", "stdout", plain=True)
    assert out == "customer=acme payload=data-for-acme\n"

    bad = finished_alloc(n, children["globex"])
    assert (bad["ClientStatus"], bad["ClientDescription"]) == ("failed", "Failed tasks")
    state = bad["TaskStates"]["main"]
    types = [e["Type"] for e in state["Events"]]
    assert types == ["Received", "Task Setup", "Started", "Terminated", "Not Restarting"]
    assert (state["State"], state["Failed"]) == ("dead", True)
    terminated, not_restarting = state["Events"][-2:]
    assert terminated["ExitCode"] == 3 and terminated["DisplayMessage"] == "Exit Code: 3"
    assert not_restarting["DisplayMessage"] == "Policy allows no restarts"
    assert not_restarting["FailsTask"] is True
    out = n.client.stream_logs.stream(bad["ID"], "main", "stdout", plain=True)
    assert out == "customer=globex payload=data-for-globex\n"
    assert len(n.job.get_allocations(children["globex"])) == 1, "no reschedule"

    def children_dead() -> bool:
        return bool(n.job.get_summary("report")["Children"]["Dead"] == 2)

    wait_for(children_dead, what="both children dead")
    assert {n.job.get_job(c)["Status"] for c in children.values()} == {"dead"}


def test_failing_task_restarts_per_policy_then_not_restarting(agent: ServerProcess) -> None:
    n = client(agent)
    job = {
        "ID": "crash",
        "Type": "service",
        "Update": NO_DEPLOYMENTS,
        "TaskGroups": [
            {
                "Name": "app",
                "RestartPolicy": {
                    "Attempts": 2,
                    "Interval": 1800 * NS_PER_S,
                    "Delay": NS_PER_S // 5,
                    "Mode": "fail",
                },
                "ReschedulePolicy": {"Attempts": 0, "Unlimited": False},
                "Tasks": [
                    {
                        "Name": "server",
                        "Driver": "raw_exec",
                        "Config": {"command": "/bin/sh", "args": ["-c", "echo boom; exit 1"]},
                    }
                ],
            }
        ],
    }
    n.jobs.register_job({"Job": job})
    alloc = finished_alloc(n, "crash")
    assert (alloc["ClientStatus"], alloc["ClientDescription"]) == ("failed", "Failed tasks")
    state = alloc["TaskStates"]["server"]
    run = ["Started", "Terminated"]
    expected = ["Received", "Task Setup", *run, "Restarting", *run, "Restarting", *run]
    # Nomad keeps the last 10 events of a task: `Received` has scrolled out.
    assert [e["Type"] for e in state["Events"]] == [*expected, "Not Restarting"][-10:]
    assert (state["State"], state["Failed"], state["Restarts"]) == ("dead", True, 2)
    assert state["LastRestart"] != "0001-01-01T00:00:00Z"
    exits = [e["ExitCode"] for e in state["Events"] if e["Type"] == "Terminated"]
    assert exits == [1, 1, 1]
    for event in state["Events"]:
        if event["Type"] == "Restarting":
            # Delay plus up to 25% jitter, in ns.
            assert NS_PER_S // 5 <= event["StartDelay"] <= NS_PER_S // 4
    assert state["Events"][-1]["DisplayMessage"] == (
        'Exceeded allowed attempts 2 in interval 30m0s and mode is "fail"'
    )
    out = n.client.stream_logs.stream(alloc["ID"], "server", "stdout", plain=True)
    assert out == "boom\n" * 3, "output of every run lands in the same log"
    assert len(n.job.get_allocations("crash")) == 1


TICKER = "i=0; while [ $i -lt 100000 ]; do echo line $i; i=$((i+1)); sleep 0.05; done"
LINE = re.compile(r"^line (\d+)$")


def numbers(text: str) -> list[int]:
    """The complete `line N` lines in `text` (a trailing partial line is ignored)."""
    complete = text[: text.rfind("\n") + 1]
    return [int(m.group(1)) for m in map(LINE.match, complete.splitlines()) if m]


def follow(url: str, params: dict[str, str], until: int, framed: bool) -> list[int]:
    """Read a followed log until line `until` arrives; decode frames when `framed`."""
    data, buf, decoder = b"", "", json.JSONDecoder()
    deadline = time.monotonic() + 40
    with httpx.stream("GET", url, params=params, timeout=10) as r:
        assert r.status_code == 200
        kind = "application/json" if framed else "text/plain"
        assert r.headers["content-type"].startswith(kind)
        for chunk in r.iter_bytes() if not framed else r.iter_text():
            if framed:
                assert isinstance(chunk, str)
                buf += chunk
                while buf:
                    try:
                        frame, end = decoder.raw_decode(buf)
                    except json.JSONDecodeError:
                        break
                    buf = buf[end:]
                    data += base64.b64decode(frame.get("Data", ""))
            else:
                assert isinstance(chunk, bytes)
                data += chunk
            seen = numbers(data.decode())
            if (seen and seen[-1] >= until) or time.monotonic() > deadline:
                return seen
    return numbers(data.decode())


def test_follow_logs_sees_lines_as_they_are_printed(agent: ServerProcess) -> None:
    n = client(agent)
    job = {
        "ID": "ticker",
        "Type": "service",
        "Update": NO_DEPLOYMENTS,
        "TaskGroups": [
            {
                "Name": "app",
                "Tasks": [
                    {
                        "Name": "server",
                        "Driver": "raw_exec",
                        "Config": {"command": "/bin/sh", "args": ["-c", TICKER]},
                    }
                ],
            }
        ],
    }
    n.jobs.register_job({"Job": job})
    (alloc,) = wait_for(
        lambda: [a for a in n.job.get_allocations("ticker") if a["ClientStatus"] == "running"],
        what="ticker running",
    )
    url = f"{agent.url}/v1/client/fs/logs/{alloc['ID']}"
    base = {"task": "server", "type": "stdout", "follow": "true", "origin": "start"}

    def printed() -> list[int]:
        return numbers(
            str(n.client.stream_logs.stream(alloc["ID"], "server", "stdout", plain=True))
        )

    wait_for(printed, what="first lines")
    for framed in (True, False):
        params = base if framed else {**base, "plain": "true"}
        target = printed()[-1] + 20  # ~1 s of output that does not exist yet
        seen = follow(url, params, target, framed)
        assert seen[-1] >= target, f"follow stalled at {seen[-1:]} (framed={framed})"
        assert seen == list(range(len(seen))), "nothing lost, nothing repeated, in order"
