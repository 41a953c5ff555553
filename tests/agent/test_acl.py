"""ACLs (management token from --acl-token-file) and the DNS-rebinding Host guard."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import nomad
import pytest
from nomad.api import exceptions
from testsupport import ServerProcess, agent_process


def test_token_required_and_checked(acl_agent: tuple[ServerProcess, str]) -> None:
    server, token = acl_agent
    good = nomad.Nomad(host="127.0.0.1", port=server.port, token=token, timeout=10)
    good.variable.create_variable("secret", {"Items": {"a": "b"}})
    assert good.variable.get_variable("secret")["Items"] == {"a": "b"}
    assert good.agent.get_agent()["config"]["ACL"]["Enabled"] is True

    anonymous = nomad.Nomad(host="127.0.0.1", port=server.port, timeout=10)
    with pytest.raises(exceptions.URLNotAuthorizedNomadException) as denied:
        anonymous.variable.get_variable("secret")
    assert denied.value.nomad_resp.status_code == 403
    assert denied.value.nomad_resp.text == "Permission denied"

    wrong = nomad.Nomad(host="127.0.0.1", port=server.port, token="not-the-token", timeout=10)
    with pytest.raises(exceptions.URLNotAuthorizedNomadException) as unknown:
        wrong.nodes.get_nodes()
    assert unknown.value.nomad_resp.text == "ACL token not found"

    bearer = httpx.get(f"{server.url}/v1/var/secret", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 200
    # Status endpoints stay open, as in Nomad (they are the readiness probe).
    assert httpx.get(f"{server.url}/v1/status/leader").status_code == 200
    assert httpx.get(f"{server.url}/v1/status/peers").status_code == 200
    assert httpx.get(f"{server.url}/v1/agent/self").status_code == 403


def test_token_file_is_private_and_reused_across_restarts(
    acl_agent: tuple[ServerProcess, str],
) -> None:
    server, token = acl_agent
    token_file = server.data_dir.parent / "acl-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    server.restart()
    assert token_file.read_text().strip() == token
    r = httpx.get(f"{server.url}/v1/nodes", headers={"X-Nomad-Token": token})
    assert r.status_code == 200


def test_existing_token_file_is_used(tmp_path: Path) -> None:
    token_file = tmp_path / "given-token"
    token_file.write_text("my-own-secret\n")
    server = agent_process(tmp_path / "agent", acl_token_file=token_file)
    server.start()
    try:
        ok = httpx.get(f"{server.url}/v1/nodes", headers={"X-Nomad-Token": "my-own-secret"})
        assert ok.status_code == 200
    finally:
        server.kill()


FOREIGN_HOSTS = ("evil.example", "evil.example:4646", "192.168.1.10", "localhost.evil.example")


def test_foreign_host_header_is_refused(agent: ServerProcess) -> None:
    for host in FOREIGN_HOSTS:
        r = httpx.get(f"{agent.url}/v1/status/leader", headers={"Host": host})
        assert r.status_code == 403, host
        assert "Invalid Host header" in r.text
        r = httpx.put(f"{agent.url}/v1/var/x", json={"Items": {"a": "b"}}, headers={"Host": host})
        assert r.status_code == 403, host
    assert httpx.get(f"{agent.url}/v1/vars").json() == []


def test_loopback_host_names_are_served(agent: ServerProcess) -> None:
    for host in ("localhost", f"localhost:{agent.port}", f"127.0.0.1:{agent.port}"):
        assert httpx.get(f"{agent.url}/v1/status/leader", headers={"Host": host}).status_code == 200
