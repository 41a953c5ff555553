"""Issue 3 end to end, against the real agent process with python-nomad and httpx: a
raw_exec service on a dynamic port runs and answers, its logs stream framed and plain
(and followed while it prints), it restarts through the API; SIGTERM and `kill -9` of
the agent leave the services running, and a restarted agent re-attaches to them (same
allocations, no duplicates, logs continue)."""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nomad
import pytest
from testsupport import ServerProcess, agent_process

from nomadpaas.agent.drivers.rawexec.driver import wrapper_state_dir

WAIT_S = 40.0  # generous: a loaded 2-core machine


def wait_for(pred: Any, timeout_s: float = WAIT_S, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def service_job(job_id: str) -> dict[str, Any]:
    """`python3 -m http.server ${NOMAD_PORT_http}` with a dynamic port labelled http."""
    return {
        "Job": {
            "ID": job_id,
            "Name": job_id,
            "Type": "service",
            "Datacenters": ["dc1"],
            "TaskGroups": [
                {
                    "Name": "web",
                    "Count": 1,
                    "Networks": [{"DynamicPorts": [{"Label": "http"}]}],
                    "Tasks": [
                        {
                            "Name": "server",
                            "Driver": "raw_exec",
                            "Config": {
                                "command": sys.executable,
                                "args": [
                                    "-u",
                                    "-m",
                                    "http.server",
                                    "${NOMAD_PORT_http}",
                                    "--bind",
                                    "127.0.0.1",
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    }


def _task_pids_under(data_dir: Path) -> list[int]:
    """Processes whose working directory is inside the agent's data dir (tasks, wrappers)."""
    root = str(data_dir.resolve())
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            pids.append(int(entry))
    return pids


@pytest.fixture
def node_agent(tmp_path: Path) -> Iterator[ServerProcess]:
    """The agent; on teardown every task it started is killed too (tasks outlive agents)."""
    server = agent_process(tmp_path / "agent", log_path=tmp_path / "agent.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()
        for pid in _task_pids_under(server.data_dir):
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except OSError:
                pass


def client(agent: ServerProcess) -> nomad.Nomad:
    return nomad.Nomad(host="127.0.0.1", port=agent.port, timeout=10)


def running_alloc(n: nomad.Nomad, job_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        allocs = [a for a in n.job.get_allocations(job_id) if a["ClientStatus"] == "running"]
        return n.allocation.get_allocation(allocs[0]["ID"]) if allocs else None

    result: dict[str, Any] = wait_for(check, what=f"{job_id} running")
    return result


def http_port(alloc: dict[str, Any]) -> int:
    ports = alloc["AllocatedResources"]["Shared"]["Ports"]
    return int(next(p["Value"] for p in ports if p["Label"] == "http"))


def answers(port: int, path: str = "/") -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code in (200, 404)
    except httpx.HTTPError:
        return False


def frames(text: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    pos, out = 0, []
    while pos < len(text):
        obj, pos = decoder.raw_decode(text, pos)
        out.append(obj)
    return out


def _cmdline_pids(needle: bytes) -> list[int]:
    """Live task processes whose argv contains `needle` (not zombies, not the raw_exec
    executor or sh wrapper, which carries the task's argv and outlives the task until
    released)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        alive = state[state.rindex(b")") + 2 :].split()[0] not in (b"Z", b"X")
        if alive and needle in argv and wrapper_state_dir(argv.split(b"\0")) is None:
            pids.append(int(entry))
    return pids


def server_pids(port: int) -> list[int]:
    """PIDs of live `http.server <port>` processes."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        if state[state.rindex(b")") + 2 :].split()[0] in (b"Z", b"X"):
            continue
        if wrapper_state_dir(argv) is not None:
            continue  # the task's executor (or sh wrapper) holds the same words in its argv
        if b"http.server" in argv and str(port).encode() in argv:
            pids.append(int(entry))
    return pids


def test_service_runs_streams_logs_and_restarts(node_agent: ServerProcess) -> None:
    n = client(node_agent)
    n.jobs.register_job(service_job("web"))
    alloc = running_alloc(n, "web")
    port = http_port(alloc)
    wait_for(lambda: answers(port, "/first"), what="service answering")
    events = [e["Type"] for e in alloc["TaskStates"]["server"]["Events"]]
    assert events == ["Received", "Task Setup", "Started"]

    # Logs without follow: plain text and frames (python-nomad reads the whole body).
    def plain_logs() -> str:
        return str(n.client.stream_logs.stream(alloc["ID"], "server", "stderr", plain=True))

    wait_for(lambda: "GET /first" in plain_logs(), what="request logged")
    framed = frames(n.client.stream_logs.stream(alloc["ID"], "server", "stderr"))
    data = b"".join(base64.b64decode(f["Data"]) for f in framed if f.get("Data"))
    assert b"GET /first" in data
    assert framed[0]["File"] == "alloc/logs/server.stderr.0"

    # Follow while it prints: requests made during the stream show up in it.
    url = f"{node_agent.url}/v1/client/fs/logs/{alloc['ID']}"
    params = {"task": "server", "type": "stderr", "follow": "true", "origin": "end"}
    seen = b""
    with httpx.stream("GET", url, params=params, timeout=10) as r:
        assert r.headers["content-type"] == "application/json"
        decoder, buf = json.JSONDecoder(), ""
        deadline = time.monotonic() + WAIT_S
        answers(port, "/followed")
        for chunk in r.iter_text():
            buf += chunk
            while buf:
                try:
                    obj, end = decoder.raw_decode(buf)
                except json.JSONDecodeError:
                    break
                buf = buf[end:]
                seen += base64.b64decode(obj.get("Data", ""))
            if b"GET /followed" in seen or time.monotonic() > deadline:
                break
    assert b"GET /followed" in seen

    # Restart through the API: Restart Signaled, not counted against the policy.
    n.client.allocation.restart_allocation(alloc["ID"])

    def restarted() -> dict[str, Any] | None:
        a = n.allocation.get_allocation(alloc["ID"])
        types = [e["Type"] for e in a["TaskStates"]["server"]["Events"]]
        return a if types[-1] == "Started" and "Restart Signaled" in types else None

    after = wait_for(restarted, what="restarted")
    assert after["TaskStates"]["server"]["Restarts"] == 1
    wait_for(lambda: answers(port), what="answering after restart")
    assert len(server_pids(port)) == 1

    n.job.deregister_job("web")
    wait_for(
        lambda: n.allocation.get_allocation(alloc["ID"])["ClientStatus"] == "complete",
        what="stopped",
    )
    final = n.allocation.get_allocation(alloc["ID"])["TaskStates"]["server"]
    assert [e["Type"] for e in final["Events"]][-3:] == ["Killing", "Terminated", "Killed"]
    wait_for(lambda: not server_pids(port), what="process gone")


def test_kill_9_agent_keeps_services_and_restart_reattaches(node_agent: ServerProcess) -> None:
    n = client(node_agent)
    jobs = ["svc-a", "svc-b", "svc-c"]
    for job_id in jobs:
        n.jobs.register_job(service_job(job_id))
    allocs = {job_id: running_alloc(n, job_id) for job_id in jobs}
    ports = {job_id: http_port(a) for job_id, a in allocs.items()}
    for port in ports.values():
        wait_for(lambda p=port: answers(p), what="answering")
    pids = {job_id: server_pids(port) for job_id, port in ports.items()}
    assert all(len(p) == 1 for p in pids.values()), pids

    node_agent.kill(signal.SIGKILL)
    for job_id, port in ports.items():
        assert answers(port, "/while-down"), f"{job_id} died with the agent"

    node_agent.start()
    n = client(node_agent)
    for job_id, alloc in allocs.items():
        current = n.job.get_allocations(job_id)
        assert [a["ID"] for a in current] == [alloc["ID"]], "same allocation, no replacement"
        assert current[0]["ClientStatus"] == "running"
        assert server_pids(ports[job_id]) == pids[job_id], "re-attached, not restarted"
        state = n.allocation.get_allocation(alloc["ID"])["TaskStates"]["server"]
        assert [e["Type"] for e in state["Events"]].count("Started") == 1

    # Logs continue: output written while the agent was down and after it came back.
    port = ports["svc-a"]
    assert answers(port, "/after-restart")

    def logs() -> str:
        return str(
            n.client.stream_logs.stream(allocs["svc-a"]["ID"], "server", "stderr", plain=True)
        )

    wait_for(lambda: "GET /after-restart" in logs(), what="logs continue")
    assert "GET /while-down" in logs()

    # The re-attached tasks are still under control: stopping kills them.
    n.job.deregister_job("svc-b")
    wait_for(lambda: not server_pids(ports["svc-b"]), what="svc-b killed")
    assert answers(ports["svc-a"]) and answers(ports["svc-c"])


def test_sigterm_leaves_tasks_running(node_agent: ServerProcess) -> None:
    n = client(node_agent)
    n.jobs.register_job(service_job("web"))
    alloc = running_alloc(n, "web")
    port = http_port(alloc)
    wait_for(lambda: answers(port), what="answering")
    pid = server_pids(port)
    node_agent.kill(signal.SIGTERM)
    assert node_agent.proc is not None and node_agent.proc.returncode == 0
    time.sleep(0.5)
    assert answers(port) and server_pids(port) == pid
    node_agent.start()
    n = client(node_agent)
    assert running_alloc(n, "web")["ID"] == alloc["ID"]
    assert server_pids(port) == pid


def test_exit_while_agent_is_down_is_collected_after_restart(node_agent: ServerProcess) -> None:
    n = client(node_agent)
    job = {
        "Job": {
            "ID": "once",
            "Type": "batch",
            "Datacenters": ["dc1"],
            "TaskGroups": [
                {
                    "Name": "run",
                    "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
                    "ReschedulePolicy": {"Attempts": 0, "Unlimited": False},
                    "Tasks": [
                        {
                            "Name": "job",
                            "Driver": "raw_exec",
                            "Config": {
                                "command": sys.executable,
                                "args": ["-c", "import sys, time; time.sleep(2); sys.exit(3)"],
                            },
                        }
                    ],
                }
            ],
        }
    }
    n.jobs.register_job(job)
    alloc = running_alloc(n, "once")
    node_agent.kill(signal.SIGKILL)
    # The task exits (code 3) while no agent watches it.
    wait_for(lambda: not _cmdline_pids(b"sys.exit(3)"), what="task exited")
    node_agent.start()
    n = client(node_agent)

    def failed() -> dict[str, Any] | None:
        a = n.allocation.get_allocation(alloc["ID"])
        return a if a["ClientStatus"] == "failed" else None

    final = wait_for(failed, what="exit collected")["TaskStates"]["job"]
    types = [e["Type"] for e in final["Events"]]
    assert types == ["Received", "Task Setup", "Started", "Terminated", "Not Restarting"]
    assert final["Events"][3]["ExitCode"] == 3


def test_dispatched_payload_reaches_the_task(node_agent: ServerProcess) -> None:
    n = client(node_agent)
    code = "import os; print(open(os.environ['NOMAD_TASK_DIR'] + '/input.txt').read(), end='')"
    parent = {
        "ID": "report",
        "Type": "batch",
        "Datacenters": ["dc1"],
        "ParameterizedJob": {"Payload": "required"},
        "TaskGroups": [
            {
                "Name": "run",
                "Tasks": [
                    {
                        "Name": "main",
                        "Driver": "raw_exec",
                        "Config": {"command": sys.executable, "args": ["-c", code]},
                        "DispatchPayload": {"File": "input.txt"},
                    }
                ],
            }
        ],
    }
    n.job.register_job("report", {"Job": parent})
    payload = base64.b64encode(b"payload from dispatch\n").decode()
    child_id = n.job.dispatch_job("report", payload=payload)["DispatchedJobID"]

    def complete() -> dict[str, Any] | None:
        allocs = n.job.get_allocations(child_id)
        return allocs[0] if allocs and allocs[0]["ClientStatus"] == "complete" else None

    alloc = wait_for(complete, what="dispatched child complete")
    out = n.client.stream_logs.stream(alloc["ID"], "main", "stdout", plain=True)
    assert out == "payload from dispatch\n"
    info = n.client.stat.stat_file(alloc["ID"], "main/local/input.txt")
    assert info["FileMode"] == "-rwxrwxrwx" and info["Size"] == len("payload from dispatch\n")
