"""The real agent: its Consul-compatible API on `--consul-port`, and a raw_exec job with a
group service + HTTP check that shows up as passing in `/v1/health/service/:name?passing`,
as a Nomad-provider registration in `/v1/service/:name`, and that is deregistered (a
parked blocking query wakes) the group's ShutdownDelay before the task gets SIGINT."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from agent.jobs_support import NO_DEPLOYMENTS, client, live_allocs, register
from agent.services.services_support import wait_for
from testsupport import ServerProcess

from nomadpaas.agent.structs.duration import NS_PER_S

SHUTDOWN_DELAY_S = 3
WAIT_S = 60.0

# The task: serve HTTP on the allocated port; on SIGINT, write the time, then exit.
SERVER_CODE = """
import http.server, os, signal, time
def on_int(signum, frame):
    with open(os.environ["SIGINT_FILE"], "w") as f:
        f.write(repr(time.time()))
    os._exit(0)
signal.signal(signal.SIGINT, on_int)
port = int(os.environ["NOMAD_PORT_http"])
handler = http.server.SimpleHTTPRequestHandler
http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
"""


def service_job(sigint_file: Path) -> dict[str, Any]:
    check = {"Type": "http", "Path": "/", "Interval": 1 * NS_PER_S, "Timeout": 2 * NS_PER_S}
    return {
        "ID": "hello",
        "Type": "service",
        "Update": NO_DEPLOYMENTS,
        "TaskGroups": [
            {
                "Name": "web",
                "Count": 1,
                "ShutdownDelay": SHUTDOWN_DELAY_S * NS_PER_S,
                "Networks": [{"DynamicPorts": [{"Label": "http"}]}],
                "Services": [
                    {
                        "Name": "hello-web",
                        "PortLabel": "http",
                        "Tags": ["router"],
                        "Checks": [check],
                    },
                    {
                        "Name": "hello-nomad",
                        "PortLabel": "http",
                        "Provider": "nomad",
                        "Checks": [{**check, "Type": "tcp"}],
                    },
                ],
                "Tasks": [
                    {
                        "Name": "server",
                        "Driver": "raw_exec",
                        "Config": {"command": "python3", "args": ["-u", "-c", SERVER_CODE]},
                        "Env": {"SIGINT_FILE": str(sigint_file)},
                        "KillTimeout": 10 * NS_PER_S,
                        "Services": [
                            {
                                "Name": "hello-task",
                                "PortLabel": "http",
                                "Checks": [{**check, "Type": "tcp"}],
                            },
                        ],
                    }
                ],
            }
        ],
    }


def test_consul_api_on_the_consul_port(agent: ServerProcess) -> None:
    base = agent.consul_url
    assert httpx.get(f"{base}/v1/status/leader").json() == "127.0.0.1:8300"
    resp = httpx.get(f"{base}/v1/catalog/services")
    assert resp.json() == {"consul": []} and "X-Consul-Index" in resp.headers
    assert httpx.get(f"{base}/v1/health/service/x?passing").json() == []
    assert httpx.get(f"{base}/v1/agent/services").json() == {}
    bad_host = httpx.get(f"{base}/v1/agent/checks", headers={"Host": "attacker.test"})
    assert bad_host.status_code == 403
    assert httpx.get(f"{agent.url}/v1/services").json() == []


def test_consul_api_accepts_the_acl_token(acl_agent: tuple[ServerProcess, str]) -> None:
    agent, token = acl_agent
    base = agent.consul_url
    assert httpx.get(f"{base}/v1/catalog/services").status_code == 403
    ok = httpx.get(f"{base}/v1/catalog/services", headers={"X-Consul-Token": token})
    assert ok.status_code == 200
    assert httpx.get(f"{base}/v1/status/leader").status_code == 200


def test_job_service_passes_then_deregisters_before_the_kill(
    agent: ServerProcess, tmp_path: Path
) -> None:
    base = agent.consul_url
    sigint_file = tmp_path / "sigint"
    n = client(agent)
    register(n, service_job(sigint_file))

    def passing() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = httpx.get(
            f"{base}/v1/health/service/hello-web?passing", timeout=10
        ).json()
        return out

    [entry] = wait_for(passing, WAIT_S)
    [stub] = live_allocs(n, "hello")
    alloc = n.allocation.get_allocation(stub["ID"])
    port = next(p["Value"] for p in alloc["AllocatedResources"]["Shared"]["Ports"])
    assert (entry["Service"]["Address"], entry["Service"]["Port"]) == ("127.0.0.1", port)
    assert entry["Service"]["Tags"] == ["router"]
    assert entry["Service"]["ID"] == f"_nomad-task-{alloc['ID']}-group-web-hello-web-http"
    assert [c["Status"] for c in entry["Checks"]] == ["passing", "passing"]
    # The task's own service (registered once the task runs).
    [task_entry] = wait_for(
        lambda: httpx.get(f"{base}/v1/health/service/hello-task?passing").json(), WAIT_S
    )
    assert task_entry["Service"]["ID"] == f"_nomad-task-{alloc['ID']}-server-hello-task-http"
    # The Nomad-provider service: in the server state and with its check result.
    [row] = wait_for(lambda: httpx.get(f"{agent.url}/v1/service/hello-nomad").json(), WAIT_S)
    assert (row["AllocID"], row["Port"], row["JobID"]) == (alloc["ID"], port, "hello")
    assert httpx.get(f"{agent.url}/v1/job/hello/services").json() == [row]
    listing = httpx.get(f"{agent.url}/v1/services").json()
    assert listing == [{"Namespace": "default",
                        "Services": [{"ServiceName": "hello-nomad", "Tags": []}]}]  # fmt: skip
    checks_url = f"{agent.url}/v1/allocation/{alloc['ID']}/checks"
    [result] = wait_for(
        lambda: [c for c in httpx.get(checks_url).json().values() if c["Status"] == "success"],
        WAIT_S,
    )
    assert (result["Service"], result["Mode"], result["Group"]) == (
        "hello-nomad", "healthiness", alloc["Name"],
    )  # fmt: skip

    # Park a blocking query on the passing instances, then stop the job.
    index = int(httpx.get(f"{base}/v1/health/service/hello-web?passing").headers["X-Consul-Index"])
    woke: list[tuple[float, Any]] = []

    def watch() -> None:
        resp = httpx.get(
            f"{base}/v1/health/service/hello-web?passing&index={index}&wait=90s", timeout=120
        )
        woke.append((time.time(), resp.json()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(0.3)
    n.job.deregister_job("hello")
    watcher.join(WAIT_S)
    assert woke, "the blocking query did not wake"
    gone_at, body = woke[0]
    assert body == []
    wait_for(sigint_file.exists, WAIT_S)
    sigint_at = float(wait_for(lambda: sigint_file.read_text().strip(), 10.0))
    # Deregistered first, then the group's ShutdownDelay, then SIGINT.
    gap_s = sigint_at - gone_at
    assert SHUTDOWN_DELAY_S - 1.0 <= gap_s <= SHUTDOWN_DELAY_S + 15.0, gap_s
    print(f"deregistered {gap_s:.2f}s before SIGINT")
    assert httpx.get(f"{agent.url}/v1/service/hello-nomad").json() == []
    assert httpx.get(f"{base}/v1/health/service/hello-web").json() == []
    assert httpx.get(f"{base}/v1/health/service/hello-task").json() == []
    # Both writes reached the event stream as Service events.
    assert service_event_types(agent) == ["ServiceRegistration", "ServiceDeregistration"]


def service_event_types(agent: ServerProcess) -> list[str]:
    """Replay the event buffer's Service topic until both types were seen (bounded)."""
    types: list[str] = []
    url = f"{agent.url}/v1/event/stream?topic=Service&index=1"
    with httpx.stream("GET", url, timeout=httpx.Timeout(10.0)) as resp:
        for line in resp.iter_lines():
            events = json.loads(line).get("Events") or [] if line.strip() else []
            types += [
                e["Type"] for e in events if e["Payload"]["Service"]["ServiceName"] == "hello-nomad"
            ]
            if len(types) >= 2:
                break
    return types


def test_registrations_come_back_after_an_agent_crash(agent: ServerProcess, tmp_path: Path) -> None:
    base = agent.consul_url
    n = client(agent)
    register(n, service_job(tmp_path / "sigint"))
    [before] = wait_for(
        lambda: httpx.get(f"{base}/v1/health/service/hello-web?passing").json(), WAIT_S
    )
    [row] = wait_for(lambda: httpx.get(f"{agent.url}/v1/service/hello-nomad").json(), WAIT_S)
    agent.restart()  # SIGKILL, then the same ports and data dir: the task keeps running
    [after] = wait_for(
        lambda: httpx.get(f"{base}/v1/health/service/hello-web?passing").json(), WAIT_S
    )
    assert after["Service"]["ID"] == before["Service"]["ID"]
    assert after["Service"]["Port"] == before["Service"]["Port"]
    [again] = wait_for(lambda: httpx.get(f"{agent.url}/v1/service/hello-nomad").json(), WAIT_S)
    assert again["ID"] == row["ID"] and again["CreateIndex"] > row["CreateIndex"]
    assert not (tmp_path / "sigint").exists()  # the same process served throughout
    # An operator may delete a registration by hand (`nomad service delete`).
    row_url = f"{agent.url}/v1/service/hello-nomad/{again['ID']}"
    assert httpx.delete(row_url).status_code == 200
    assert httpx.get(f"{agent.url}/v1/service/hello-nomad").json() == []
    assert httpx.delete(row_url).status_code == 404
