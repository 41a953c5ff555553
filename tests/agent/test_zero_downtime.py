"""Zero downtime through Consul during a canary update and a failed, auto-reverted update:
a client that only calls `passing` instances never reaches one that is stopping, because
the agent deregisters each instance the group's ShutdownDelay before it signals the task."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent.deployments.deploy_support import (
    S,
    allocs,
    deployment_of_version,
    group_state,
    register,
    running,
    stable_flags,
    update_block,
    wait_for,
    wait_status,
)
from agent.jobs_support import client
from testsupport import ServerProcess

SERVICE = "zd-web"
SHUTDOWN_DELAY_S = 3
STOPPING_GRACE_S = 1.0  # how long a signalled task keeps answering, marked "stopping"
PROBE_PERIOD_S = 0.05  # ~20 requests/s
PROBE_MAX_S = 90.0  # the prober stops by itself at the latest after this
DEREG_SLACK_S = 0.5  # polling granularity and clock reads on a loaded machine
DEPLOY_WAIT_S = 40.0

# The task: answer every path with release and alloc ID; /health fails when HEALTH_OK=0.
# On SIGINT/SIGTERM, write the time, keep answering (marked stopping) for a second, exit.
SERVER_CODE = """
import http.server, json, os, signal, threading, time
STOPPING = []
def on_signal(signum, frame):
    if not STOPPING:
        STOPPING.append(time.time())
        path = os.path.join(os.environ["SIGNAL_DIR"], os.environ["NOMAD_ALLOC_ID"])
        with open(path + ".tmp", "w") as f:
            f.write(repr(STOPPING[0]))
        os.replace(path + ".tmp", path)
        threading.Timer(float(os.environ["STOPPING_GRACE_S"]), os._exit, (0,)).start()
signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        healthy = self.path != "/health" or os.environ["HEALTH_OK"] == "1"
        body = json.dumps({"release": os.environ["RELEASE"], "alloc": os.environ["NOMAD_ALLOC_ID"],
                           "stopping": bool(STOPPING)}).encode()
        self.send_response(200 if healthy else 500)
        self.send_header("X-Stopping", "1" if STOPPING else "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["NOMAD_PORT_http"])), H)
server.daemon_threads = True
server.serve_forever(poll_interval=0.1)
"""


def zd_job(release: str, signal_dir: Path, *, healthy: bool = True) -> dict[str, Any]:
    update = update_block(
        HealthCheck="checks",
        MinHealthyTime=S,
        HealthyDeadline=(15 if healthy else 5) * S,
        Canary=2,
        AutoPromote=True,
        AutoRevert=True,
    )
    check = {"Type": "http", "Path": "/health", "Interval": S, "Timeout": S}
    env = {
        "RELEASE": release,
        "HEALTH_OK": "1" if healthy else "0",
        "SIGNAL_DIR": str(signal_dir),
        "STOPPING_GRACE_S": str(STOPPING_GRACE_S),
    }
    return {
        "ID": "web",
        "Type": "service",
        "Update": update,
        "TaskGroups": [
            {
                "Name": "app",
                "Count": 2,
                "ShutdownDelay": SHUTDOWN_DELAY_S * S,
                "Networks": [{"DynamicPorts": [{"Label": "http"}]}],
                "Services": [
                    {"Name": SERVICE, "Provider": "consul", "PortLabel": "http", "Checks": [check]}
                ],
                "ReschedulePolicy": {"Attempts": 0, "Unlimited": False},
                "RestartPolicy": {"Attempts": 0, "Mode": "fail", "Delay": S // 10},
                "Tasks": [
                    {
                        "Name": "srv",
                        "Driver": "raw_exec",
                        "Env": env,
                        "KillTimeout": 10 * S,
                        "Config": {"command": "python3", "args": ["-u", "-c", SERVER_CODE]},
                    }
                ],
            }
        ],
    }


def alloc_of_service_id(service_id: str) -> str:
    """`_nomad-task-<alloc>-group-...` → the allocation ID."""
    return service_id.removeprefix("_nomad-task-")[:36]


@dataclass
class Probe:
    """One round: the passing listing, then a GET to one of the listed instances."""

    listed_at: float  # time the listing's answer arrived
    listed: frozenset[str]  # alloc IDs passing in that listing
    target: str | None = None
    answered_at: float | None = None
    body: dict[str, Any] | None = None
    stopping_header: str | None = None
    error: str | None = None


@dataclass
class Prober:
    """A bounded client loop that only calls instances Consul lists as passing."""

    consul: str
    probes: list[Probe] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    listing_errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        deadline = time.monotonic() + PROBE_MAX_S
        turn = 0
        with httpx.Client(timeout=5.0) as http:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    entries = http.get(f"{self.consul}/v1/health/service/{SERVICE}?passing").json()
                except httpx.HTTPError as err:
                    self.listing_errors.append(repr(err))
                    continue
                probe = Probe(
                    time.time(),
                    frozenset(alloc_of_service_id(e["Service"]["ID"]) for e in entries),
                )
                self.probes.append(probe)
                if entries:
                    entry = entries[turn % len(entries)]
                    turn += 1
                    probe.target = alloc_of_service_id(entry["Service"]["ID"])
                    svc = entry["Service"]
                    try:
                        resp = http.get(f"http://{svc['Address']}:{svc['Port']}/")
                        probe.answered_at = time.time()
                        probe.body = resp.json()
                        probe.stopping_header = resp.headers.get("X-Stopping")
                    except (httpx.HTTPError, ValueError) as err:
                        probe.error = repr(err)
                self.stop.wait(PROBE_PERIOD_S)


def first_absent_after_last_seen(probes: list[Probe], alloc_id: str) -> float:
    """Upper bound of the deregistration time: the first listing without `alloc_id` after
    the last one that had it."""
    last_seen = max(i for i, p in enumerate(probes) if alloc_id in p.listed)
    later = [p for p in probes[last_seen + 1 :] if alloc_id not in p.listed]
    assert later, f"{alloc_id[:8]} still listed at the end"
    return later[0].listed_at


@pytest.mark.slow
def test_passing_instances_never_stopping_during_canary_update_and_rollback(
    agent: ServerProcess, tmp_path: Path
) -> None:
    n = client(agent)
    signals = tmp_path / "signals"
    signals.mkdir()
    consul = agent.consul_url

    # (a) v0 runs and both instances pass.
    register(n, zd_job("v0", signals))
    wait_status(n, deployment_of_version(n, "web", 0)["ID"], "successful", DEPLOY_WAIT_S)
    v0_ids = {a["ID"] for a in running(n, "web")}
    assert len(v0_ids) == 2
    wait_for(
        lambda: (
            {
                alloc_of_service_id(e["Service"]["ID"])
                for e in httpx.get(f"{consul}/v1/health/service/{SERVICE}?passing").json()
            }
            == v0_ids
        ),
        "both v0 instances passing",
    )

    prober = Prober(consul)
    thread = threading.Thread(target=prober.run, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        # (b) Canary update, auto-promoted; the old instances stop.
        register(n, zd_job("v1", signals))
        d1 = deployment_of_version(n, "web", 1)
        d1 = wait_status(n, d1["ID"], "successful", DEPLOY_WAIT_S)
        assert d1["StatusDescription"] == "Deployment completed successfully"
        s1 = group_state(d1)
        assert s1["Promoted"] is True and len(s1["PlacedCanaries"]) == 2
        v1_ids = set(s1["PlacedCanaries"])
        for alloc_id in v0_ids:
            wait_for(lambda a=alloc_id: (signals / a).exists(), f"v0 {alloc_id[:8]} signalled")
        wait_for(
            lambda: all(
                a["ClientStatus"] == "complete" for a in allocs(n, "web") if a["ID"] in v0_ids
            ),
            "v0 allocations complete",
        )
        b_ended = len(prober.probes)

        # (c) v2's /health fails: canaries never pass, the deployment fails and
        # auto-reverts to v1 as v3; v1's instances are never stopped.
        register(n, zd_job("v2", signals, healthy=False))
        d2 = deployment_of_version(n, "web", 2)
        d2 = wait_status(n, d2["ID"], "failed", DEPLOY_WAIT_S)
        assert d2["StatusDescription"] == (
            "Failed due to unhealthy allocations - rolling back to job version 1"
        )
        v2_ids = set(group_state(d2)["PlacedCanaries"])
        assert len(v2_ids) == 2
        d3 = wait_status(n, deployment_of_version(n, "web", 3)["ID"], "successful", DEPLOY_WAIT_S)
        assert group_state(d3)["HealthyAllocs"] == 2
        job = n.job.get_job("web")
        assert job["Version"] == 3 and job["TaskGroups"][0]["Tasks"][0]["Env"]["RELEASE"] == "v1"
        for alloc_id in v2_ids:
            wait_for(lambda a=alloc_id: (signals / a).exists(), f"v2 {alloc_id[:8]} signalled")
        time.sleep(STOPPING_GRACE_S + 0.5)  # let the probes run past the canaries' exit
    finally:
        prober.stop.set()
        thread.join(10)
    elapsed = time.monotonic() - started
    assert not thread.is_alive()

    flags = stable_flags(n, "web")
    assert (flags[0], flags[1], flags[2], flags[3]) == (True, True, False, True)
    assert {a["ID"] for a in running(n, "web")} == v1_ids
    assert not any((signals / a).exists() for a in v1_ids), "a v1 instance was signalled"

    probes = prober.probes
    answered = [p for p in probes if p.body is not None]
    print(f"{len(probes)} probes, {len(answered)} answers in {elapsed:.1f}s")
    assert not prober.listing_errors
    assert len(answered) >= 50, len(answered)  # the loop really ran throughout
    # Zero downtime: every listed instance answered, none was stopping.
    assert [p for p in probes if p.error] == []
    assert [p for p in answered if p.body and p.body["stopping"]] == []
    assert {p.stopping_header for p in answered} == {"0"}
    # Both versions served during (b), and only v1 after the rollback; v2 never did.
    releases_b = {p.body["release"] for p in probes[:b_ended] if p.body}
    assert releases_b == {"v0", "v1"}
    assert {p.body["release"] for p in probes[b_ended:] if p.body} == {"v1"}
    assert not any(v2_ids & p.listed for p in probes)
    # Each old instance left `passing` at least ShutdownDelay before its signal.
    for alloc_id in v0_ids:
        signalled_at = float((signals / alloc_id).read_text())
        gone_by = first_absent_after_last_seen(probes, alloc_id)
        lead_s = signalled_at - gone_by
        print(f"v0 {alloc_id[:8]} left passing >= {lead_s:.2f}s before its signal")
        assert lead_s >= SHUTDOWN_DELAY_S - DEREG_SLACK_S, lead_s
