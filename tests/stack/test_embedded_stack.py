"""`nomadpaas up | down | doctor` end to end, with the real agent and S3 server.

Every command runs as its own process (`python -m nomadpaas ...`), as a user runs it, so
the servers really are detached from the CLI that started them. NOMADPAAS_HOME is a tmp
dir and every port is 0 (any free one). The `home` fixture kills leftovers by PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from nomadpaas.settings import Settings
from nomadpaas.stack import load_record
from nomadpaas.stack.process import pid_alive

pytestmark = pytest.mark.slow

ANY_PORTS = ["--nomad-port", "0", "--consul-port", "0", "--s3-port", "0"]
#: Variables that would point the CLI somewhere else than the stack under test.
_FOREIGN = ("NOMAD_", "CONSUL_", "NOMADPAAS_", "AWS_")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    env["NOMADPAAS_HOME"] = str(home)
    return env


def cli(home: Path, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nomadpaas", *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def up(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = cli(home, "up", *ANY_PORTS, "--timeout", "90", *args)
    assert result.returncode == 0, result.stderr
    return result


def _pids(home: Path) -> dict[str, int]:
    record = load_record(home)
    assert record is not None
    return {name: proc.pid for name, proc in record.processes.items()}


def _servers_of(home: Path) -> list[int]:
    """Every live process whose command line names this home's data dirs."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(home) in cmd and "--data-dir" in cmd and pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return sorted(found)


def _wait_dead(pid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still alive"
        time.sleep(0.05)


def test_up_starts_both_servers_once_and_writes_the_record(home: Path) -> None:
    first = json.loads(up(home, "--json").stdout)
    assert first["already_running"] is False
    assert httpx.get(first["nomad_addr"] + "/v1/status/leader").status_code == 200
    assert httpx.get(first["s3_endpoint"] + "/").status_code < 500
    assert (home / "stack.json").stat().st_mode & 0o777 == 0o600
    token_file = Path(first["token_file"])
    assert token_file.parent == home
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert first["token"] == token_file.read_text().strip()
    pids = _pids(home)
    assert sorted(pids.values()) == _servers_of(home)

    again = up(home)  # human form: says so, prints the env again
    assert "already running" in again.stdout
    assert f"export NOMAD_ADDR={first['nomad_addr']}" in again.stdout
    assert _pids(home) == pids
    assert sorted(pids.values()) == _servers_of(home), "a second copy was started"


def test_up_env_evals_in_bash_and_the_token_is_required(home: Path) -> None:
    up(home)
    script = 'eval "$(python -m nomadpaas up --env)" && python -c "import os, json; ' \
        'print(json.dumps(dict(os.environ)))"'  # fmt: skip
    env = _env(home)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    shell = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    exported = json.loads(shell.stdout)
    for key in (
        "NOMAD_ADDR", "NOMAD_TOKEN", "CONSUL_HTTP_ADDR", "NOMADPAAS_S3_ENDPOINT",
        "NOMADPAAS_S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION", "NOMADPAAS_HOME",
    ):  # fmt: skip
        assert exported.get(key), key
    addr, token = exported["NOMAD_ADDR"], exported["NOMAD_TOKEN"]
    assert httpx.get(f"{addr}/v1/agent/self", headers={"X-Nomad-Token": token}).status_code == 200
    assert httpx.get(f"{addr}/v1/agent/self").status_code == 403
    assert httpx.get(f"{addr}/v1/agent/self", headers={"X-Nomad-Token": "x"}).status_code == 403
    # The same settings without eval: the CLI falls back to stack.json.
    settings = Settings.from_env({"NOMADPAAS_HOME": str(home)})
    assert (settings.nomad_addr, settings.nomad_token) == (addr, token)


def test_doctor_passes_when_up_and_down_stops_only_the_stack(home: Path) -> None:
    up(home)
    pids = _pids(home)
    ok = cli(home, "doctor")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "FAIL" not in ok.stdout and "Consul answers" in ok.stdout
    checks = {c["name"]: c for c in json.loads(cli(home, "doctor", "--json").stdout)}
    assert checks["nomad.token"]["status"] == "ok"
    assert checks["s3.bucket"]["status"] == "ok"

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        stopped = cli(home, "down", "--json")
        assert stopped.returncode == 0, stopped.stderr
        assert sorted(json.loads(stopped.stdout)["stopped"]) == ["agent", "s3"]
        for pid in pids.values():
            _wait_dead(pid)
        assert _servers_of(home) == []
        assert bystander.poll() is None, "down killed a process it did not start"
    finally:
        bystander.kill()
        bystander.wait(timeout=10)

    broken = cli(home, "doctor")
    assert broken.returncode == 6, broken.stdout
    assert "FAIL" in broken.stdout and "nomadpaas up" in broken.stdout
    again = cli(home, "down")
    assert again.returncode == 0 and "not running" in again.stderr


def test_kill_9_then_up_keeps_variables_and_objects(home: Path) -> None:
    from nomadpaas.storage.s3 import S3Storage

    up(home)
    settings = Settings.from_env({"NOMADPAAS_HOME": str(home)})
    headers = {"X-Nomad-Token": settings.nomad_token or ""}
    var_url = f"{settings.nomad_addr}/v1/var/nomadpaas/apps/crashtest"
    put = httpx.put(var_url, json={"Items": {"owner": "stack-test"}}, headers=headers)
    assert put.status_code == 200, put.text
    S3Storage.from_settings(settings).put_bytes("slugs/crashtest/a.tar.gz", b"slug bytes")

    before = _pids(home)
    for pid in before.values():
        os.kill(pid, signal.SIGKILL)
    for pid in before.values():
        _wait_dead(pid)

    # No port flags: the ports recorded last time are reused (they are free again).
    again = cli(home, "up", "--json", "--timeout", "90")
    assert again.returncode == 0, again.stderr
    restarted = json.loads(again.stdout)
    assert sorted(restarted["started"]) == ["agent", "s3"]
    assert set(_pids(home).values()).isdisjoint(before.values())
    after = Settings.from_env({"NOMADPAAS_HOME": str(home)})
    assert (after.nomad_addr, after.s3_endpoint) == (settings.nomad_addr, settings.s3_endpoint)
    got = httpx.get(var_url, headers={"X-Nomad-Token": after.nomad_token or ""})
    assert got.status_code == 200, got.text
    assert got.json()["Items"] == {"owner": "stack-test"}
    data = S3Storage.from_settings(after).get_bytes("slugs/crashtest/a.tar.gz")
    assert data == b"slug bytes"


def test_up_env_prints_only_export_lines(home: Path) -> None:
    up(home)
    lines = cli(home, "up", "--env").stdout.splitlines()
    assert lines and all(line.startswith("export ") for line in lines)
    assert "export AWS_DEFAULT_REGION=us-east-1" in lines
    assert f"export NOMADPAAS_HOME={home}" in lines


def test_doctor_checks_a_cluster_given_by_env_vars(
    tmp_path: Path, acl_agent: tuple[Any, str], s3: Any
) -> None:
    """No stack.json: doctor checks NOMAD_ADDR, NOMAD_TOKEN and the S3 endpoint."""
    server, token = acl_agent
    env = _env(tmp_path / "empty-home")
    env.update(
        NOMAD_ADDR=server.url,
        NOMAD_TOKEN=token,
        CONSUL_HTTP_ADDR=server.consul_url,
        NOMADPAAS_S3_ENDPOINT=s3.url,
        AWS_ACCESS_KEY_ID="ci",
        AWS_SECRET_ACCESS_KEY="ci-secret",
        AWS_DEFAULT_REGION="us-east-1",
    )

    def doctor(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nomadpaas", "doctor", "--json"],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    ok = doctor()
    checks = {c["name"]: c for c in json.loads(ok.stdout)}
    assert ok.returncode == 0, ok.stdout
    assert checks["stack"]["status"] == "info"
    assert checks["nomad.token"]["status"] == "ok"
    assert checks["s3.bucket"]["status"] == "ok"  # missing at first: created
    assert checks["consul"]["status"] == "ok"

    no_consul = doctor(CONSUL_HTTP_ADDR="http://127.0.0.1:9")  # discard port: nothing there
    assert no_consul.returncode == 6
    assert {c["name"]: c for c in json.loads(no_consul.stdout)}["consul"]["status"] == "fail"

    bad = doctor(NOMAD_TOKEN="not-the-token")
    checks = {c["name"]: c for c in json.loads(bad.stdout)}
    assert bad.returncode == 1
    assert checks["nomad.token"]["status"] == "fail"
    assert "refused" in checks["nomad.token"]["message"]

    gone = doctor(NOMADPAAS_S3_ENDPOINT="http://127.0.0.1:9")  # discard port: nothing there
    assert gone.returncode == 6
    assert {c["name"]: c for c in json.loads(gone.stdout)}["s3"]["status"] == "fail"
