"""`up`/`down` process management, with stand-in servers: never twice, only ours, timeouts.

The servers here are tiny http.server stand-ins (tests/stack/standin.py); the tests
with the real agent and S3 server are in test_embedded_stack.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from nomadpaas.errors import NomadPaasError, TimedOut
from nomadpaas.stack import StackEvent, down, load_record, running, up
from nomadpaas.stack.process import create_time, pid_alive

ANY_PORT: dict[str, Any] = {"nomad_port": 0, "consul_port": 0, "s3_port": 0}
STANDIN = str(Path(__file__).with_name("standin.py"))
Factory = Callable[[str, Any, Path], list[str]]


def _up(home: Path, factory: Factory, **kwargs: Any) -> Any:
    return up(home, argv_factory=factory, timeout=30.0, **{**ANY_PORT, **kwargs})


def _wait_dead(pid: int) -> None:
    for _ in range(200):
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still alive")


def test_up_twice_starts_nothing_the_second_time(home: Path, standin_argv: Factory) -> None:
    first = _up(home, standin_argv)
    assert first.started == ("agent", "s3")
    pids = {n: p.pid for n, p in first.record.processes.items()}
    events: list[StackEvent] = []
    second = up(home, argv_factory=standin_argv, on_event=events.append)
    assert second.already_running and second.started == ()
    assert {n: p.pid for n, p in second.record.processes.items()} == pids
    assert [e.kind for e in events] == ["running", "running"]
    assert running(home) == second.record


def test_up_restarts_only_the_dead_server_on_its_port(home: Path, standin_argv: Factory) -> None:
    first = _up(home, standin_argv)
    agent_pid = first.record.processes["agent"].pid
    s3 = first.record.processes["s3"]
    os.kill(s3.pid, signal.SIGKILL)
    _wait_dead(s3.pid)
    assert running(home) is None
    again = up(home, argv_factory=standin_argv, timeout=30.0)  # ports: "you choose"
    assert again.started == ("s3",)
    assert again.record.processes["agent"].pid == agent_pid
    assert again.record.processes["s3"].pid != s3.pid
    assert again.record.s3_endpoint == first.record.s3_endpoint
    assert again.record.aws_secret_access_key == first.record.aws_secret_access_key
    assert httpx.get(again.record.s3_endpoint + "/").status_code == 200


def test_record_and_token_file_are_private(home: Path, standin_argv: Factory) -> None:
    result = _up(home, standin_argv)
    assert (home / "stack.json").stat().st_mode & 0o777 == 0o600
    assert Path(result.record.token_file).stat().st_mode & 0o777 == 0o600
    doc = json.loads((home / "stack.json").read_text())
    assert set(doc) >= {
        "nomad_addr", "consul_addr", "s3_endpoint", "s3_bucket", "token_file",
        "aws_access_key_id", "aws_secret_access_key", "processes",
    }  # fmt: skip
    agent = doc["processes"]["agent"]
    assert agent["create_time"] == create_time(agent["pid"])
    assert Path(agent["log"]).parent == home / "logs"


def test_down_stops_ours_and_spares_a_reused_pid(home: Path, standin_argv: Factory) -> None:
    first = _up(home, standin_argv)
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        # Pretend a crashed server's PID was reused by the unrelated process.
        doc = json.loads((home / "stack.json").read_text())
        doc["processes"]["ghost"] = {
            "pid": unrelated.pid,
            "argv": [sys.executable, STANDIN, "agent", "1", "x"],
            "log": "",
            "started_at": 0,
            "create_time": create_time(unrelated.pid),
        }
        (home / "stack.json").write_text(json.dumps(doc))
        result = down(home, timeout=10.0)
        assert sorted(result.stopped) == ["agent", "s3"]
        assert result.not_running == ("ghost",)
        for proc in first.record.processes.values():
            _wait_dead(proc.pid)
        assert unrelated.poll() is None, "down killed a process it did not start"
        record = load_record(home)
        assert record is not None and record.processes == {}
        assert record.nomad_addr == first.record.nomad_addr  # kept for the next `up`
        assert down(home).stopped == ()
    finally:
        unrelated.kill()
        unrelated.wait(timeout=10)


def test_up_times_out_and_stops_what_it_started(home: Path, standin_argv: Factory) -> None:
    def silent(name: str, ports: object, home: Path) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(120)", name]

    with pytest.raises(TimedOut) as info:
        up(home, argv_factory=silent, timeout=1.0, **ANY_PORT)
    assert info.value.exit_code == 5
    assert "did not answer within 1s" in info.value.message
    for line in (home / "logs").iterdir():
        assert line.name in ("agent.log", "s3.log")
    record = load_record(home)
    assert record is None or record.processes == {}
    assert not _pids_running("time.sleep(120)", "agent")


def test_server_exiting_early_is_reported_with_its_log(home: Path, standin_argv: Factory) -> None:
    def crashing(name: str, ports: object, home: Path) -> list[str]:
        return [sys.executable, "-c", f"import sys; sys.exit('{name}: cannot bind')"]

    with pytest.raises(NomadPaasError) as info:
        up(home, argv_factory=crashing, timeout=30.0, **ANY_PORT)
    assert "exited before answering" in info.value.message
    assert "cannot bind" in info.value.message
    assert str(home / "logs") in str(info.value.hint)


def test_orphan_answering_on_our_port_is_not_taken_for_ours(
    home: Path, standin_argv: Factory
) -> None:
    """tooling.md §7: the port taken between choosing it and binding it."""
    orphans: list[subprocess.Popen[bytes]] = []

    def racing(name: str, ports: Any, home: Path) -> list[str]:
        if name == "agent":  # someone else grabs the port first; ours never binds
            orphans.append(
                subprocess.Popen(
                    [sys.executable, STANDIN, "agent", str(ports.nomad), str(home / "acl-token")]
                )
            )
            return [sys.executable, "-c", "import time; time.sleep(120)", "agent"]
        return standin_argv(name, ports, home)

    try:
        with pytest.raises(TimedOut):
            up(home, argv_factory=racing, timeout=3.0, **ANY_PORT)
        assert orphans and orphans[0].poll() is None, "up must not touch the orphan"
    finally:
        for orphan in orphans:
            orphan.kill()
            orphan.wait(timeout=10)


def _pids_running(*needles: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if all(n in cmd for n in needles) and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_concurrent_ups_start_one_stack(home: Path, standin_argv: Factory) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: _up(home, standin_argv), range(3)))
    assert sum(bool(r.started) for r in results) == 1
    assert len({tuple(sorted(p.pid for p in r.record.processes.values())) for r in results}) == 1
    assert len(_pids_running(STANDIN, str(home))) == 1  # the agent's argv names the home
