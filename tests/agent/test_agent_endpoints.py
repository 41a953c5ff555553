"""Agent, status, regions, nodes and namespaces endpoints, via python-nomad and httpx."""

from __future__ import annotations

import socket
import time

import httpx
import nomad
import pytest
from nomad.api import exceptions
from testsupport import ServerProcess


def test_agent_self_status_and_regions(agent: ServerProcess) -> None:
    n = nomad.Nomad(host="127.0.0.1", port=agent.port, timeout=10)
    me = n.agent.get_agent()
    config = me["config"]
    assert config["Version"]["Version"].count(".") == 2
    assert config["Version"]["VersionMetadata"].startswith("nomadpaas")
    assert (config["Region"], config["Datacenter"]) == ("global", "dc1")
    assert config["ACL"]["Enabled"] is False
    assert config["Client"]["Enabled"] is True and config["Server"]["Enabled"] is True
    assert config["DataDir"] == str(agent.data_dir.resolve())
    assert me["member"]["Status"] == "alive"
    assert all(isinstance(v, str) for v in me["stats"]["nomad"].values())
    assert n.status.leader.get_leader() == "127.0.0.1:4647"
    assert n.status.peers.get_peers() == ["127.0.0.1:4647"]
    assert n.regions.get_regions() == ["global"]
    r = httpx.get(f"{agent.url}/v1/status/leader")
    assert r.headers["X-Nomad-KnownLeader"] == "true" and r.headers["X-Nomad-LastContact"] == "0"


def test_nodes_list_and_node(agent: ServerProcess) -> None:
    n = nomad.Nomad(host="127.0.0.1", port=agent.port, timeout=10)
    nodes = n.nodes.get_nodes()
    assert len(nodes) == 1
    stub = nodes[0]
    assert stub["Status"] == "ready" and stub["SchedulingEligibility"] == "eligible"
    assert stub["Datacenter"] == "dc1" and stub["NodePool"] == "default"
    assert stub["Drivers"]["raw_exec"]["Detected"] is True
    assert stub["Drivers"]["raw_exec"]["Healthy"] is True
    assert "Attributes" not in stub
    with_resources = httpx.get(f"{agent.url}/v1/nodes?resources=True").json()[0]
    assert with_resources["NodeResources"]["Memory"]["MemoryMB"] > 0
    assert "Attributes" not in httpx.get(f"{agent.url}/v1/nodes?resources=False").json()[0]
    assert httpx.get(f"{agent.url}/v1/nodes?resources=maybe").status_code == 500

    node = n.node.get_node(stub["ID"])
    assert node["ID"] == stub["ID"] and node["Attributes"]["driver.raw_exec"] == "1"
    assert node["ModifyIndex"] == stub["ModifyIndex"]
    with pytest.raises(exceptions.URLNotFoundNomadException) as missing:
        n.node.get_node("00000000-0000-0000-0000-000000000000")
    assert missing.value.nomad_resp.text == "node not found"


def test_namespaces(agent: ServerProcess) -> None:
    listed = httpx.get(f"{agent.url}/v1/namespaces").json()
    assert [ns["Name"] for ns in listed] == ["default"]
    assert httpx.get(f"{agent.url}/v1/namespace/default").json()["Name"] == "default"
    assert httpx.get(f"{agent.url}/v1/namespace/nope").status_code == 404
    assert httpx.put(f"{agent.url}/v1/namespace/apps", json={"description": "d"}).status_code == 200
    assert httpx.get(f"{agent.url}/v1/namespace/apps").json()["Description"] == "d"
    assert httpx.delete(f"{agent.url}/v1/namespace/default").status_code == 400


def test_idle_keep_alive_connections_stay_open(agent: ServerProcess) -> None:
    """Nomad's and Consul's servers never close an idle keep-alive connection; a pooled
    client (python-nomad's requests session) reuses one without retrying, so a server
    that closed it after uvicorn's default 5 s made the next request fail with
    "Connection reset by peer" whenever the two crossed."""
    ports = [agent.port, int(agent.consul_url.rsplit(":", 1)[1])]
    conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for port in ports]
    try:
        for conn in conns:
            assert _get(conn, "/v1/status/leader").startswith(b"HTTP/1.1 200")
        time.sleep(5.5)  # past uvicorn's default keep-alive timeout
        for conn in conns:
            assert _get(conn, "/v1/status/leader").startswith(b"HTTP/1.1 200")
    finally:
        for conn in conns:
            conn.close()


def _get(conn: socket.socket, path: str) -> bytes:
    """One keep-alive GET on `conn`; the whole response (headers and body)."""
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"the server closed the connection; got {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":", 1)[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    )
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        body += chunk
    return data
