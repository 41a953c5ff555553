"""The Consul-compatible API served over real HTTP (uvicorn on a loopback port) from a
registry whose checks probe a real local HTTP server: shapes of catalog/health/agent
endpoints, `?passing`, `?tag`, blocking queries with `X-Consul-Index`, Host guard, ACL."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from agent.services.services_support import Upstream, serve_asgi, wait_for
from agent.services.test_registry import instance

from nomadpaas.agent.client.serviceregistration.registry import ServiceRegistry
from nomadpaas.agent.consul.http import ConsulAPI
from nomadpaas.agent.consul.shapes import ConsulNode

NODE = ConsulNode("node-1", "devbox", "dc1")
TOKEN = "s3cr3t-management-token"


@pytest.fixture
def registry() -> Iterator[ServiceRegistry]:
    reg = ServiceRegistry(NODE.id, NODE.name, NODE.datacenter)
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


def passing_ids(base: str) -> list[str]:
    resp = httpx.get(f"{base}/v1/health/service/web?passing", timeout=10)
    resp.raise_for_status()
    return [e["Service"]["ID"] for e in resp.json()]


def test_catalog_health_agent_shapes(registry: ServiceRegistry) -> None:
    with Upstream() as up, serve_asgi(ConsulAPI(registry, NODE).app()) as base:
        registry.register([instance(up.port)])
        wait_for(lambda: passing_ids(base) == ["svc-1"])
        assert httpx.get(f"{base}/v1/status/leader").json() == "127.0.0.1:8300"
        services = httpx.get(f"{base}/v1/catalog/services")
        assert services.json() == {"consul": [], "web": ["v1"]}
        assert int(services.headers["X-Consul-Index"]) >= 1
        assert services.headers["X-Consul-Knownleader"] == "true"
        [entry] = httpx.get(f"{base}/v1/health/service/web").json()
        assert entry["Node"]["Node"] == "devbox" and entry["Node"]["Address"] == "127.0.0.1"
        svc = entry["Service"]
        assert (svc["ID"], svc["Service"], svc["Tags"], svc["Address"], svc["Port"]) == (
            "svc-1", "web", ["v1"], "127.0.0.1", up.port,
        )  # fmt: skip
        assert svc["Meta"] == {"external-source": "nomad"}
        serf, check = entry["Checks"]
        assert serf["CheckID"] == "serfHealth" and serf["Status"] == "passing"
        assert {k: check[k] for k in ("CheckID", "Name", "Status", "ServiceID", "ServiceName",
                                      "Type", "Interval")} == {
            "CheckID": "chk-svc-1", "Name": "alive", "Status": "passing",
            "ServiceID": "svc-1", "ServiceName": "web", "Type": "http", "Interval": "",
        }  # fmt: skip
        assert check["Output"].startswith(f"HTTP GET http://127.0.0.1:{up.port}/status: 200 OK")
        [cat] = httpx.get(f"{base}/v1/catalog/service/web").json()
        assert (cat["ServiceID"], cat["ServicePort"], cat["ServiceTags"]) == ("svc-1", up.port,
                                                                              ["v1"])  # fmt: skip
        assert httpx.get(f"{base}/v1/catalog/service/web?tag=v2").json() == []
        agent_services = httpx.get(f"{base}/v1/agent/services").json()
        assert list(agent_services) == ["svc-1"] and agent_services["svc-1"]["Port"] == up.port
        assert list(httpx.get(f"{base}/v1/agent/checks").json()) == ["chk-svc-1"]
        assert httpx.get(f"{base}/v1/health/service/nothing").json() == []


def test_passing_filter_follows_the_check(registry: ServiceRegistry) -> None:
    with Upstream() as good, Upstream() as bad, serve_asgi(ConsulAPI(registry, NODE).app()) as base:
        bad.status = 500
        registry.register([instance(good.port, sid="a"), instance(bad.port, sid="b")])
        wait_for(lambda: passing_ids(base) == ["a"])
        all_ids = [e["Service"]["ID"] for e in httpx.get(f"{base}/v1/health/service/web").json()]
        assert all_ids == ["a", "b"]
        bad.status = 429  # warning is not passing
        wait_for(lambda: registry.instances()[1].checks[0].status == "warning")
        assert passing_ids(base) == ["a"]
        bad.status = 200
        wait_for(lambda: passing_ids(base) == ["a", "b"])
        assert httpx.get(f"{base}/v1/health/service/web?passing=bogus").status_code == 400


def test_blocking_query_wakes_on_change(registry: ServiceRegistry) -> None:
    with Upstream() as up, serve_asgi(ConsulAPI(registry, NODE).app()) as base:
        registry.register([instance(up.port)])
        wait_for(lambda: passing_ids(base) == ["svc-1"])
        first = httpx.get(f"{base}/v1/health/service/web?passing")
        index = int(first.headers["X-Consul-Index"])
        # No change: the query waits out `wait` and returns the same index.
        started = time.monotonic()
        idle = httpx.get(f"{base}/v1/health/service/web?index={index}&wait=1s", timeout=30)
        assert time.monotonic() - started >= 0.9
        assert int(idle.headers["X-Consul-Index"]) == index
        # A change to another service does not wake a query on this one.
        other = dataclasses.replace(instance(up.port, sid="other"), name="api")
        result: list[httpx.Response] = []
        t = threading.Thread(
            target=lambda: result.append(
                httpx.get(
                    f"{base}/v1/health/service/web?passing&index={index}&wait=60s", timeout=90
                )
            )
        )
        t.start()
        time.sleep(0.3)
        registry.register([other])
        time.sleep(0.5)
        assert t.is_alive()
        changed_at = time.monotonic()
        up.status = 500  # the web check turns critical: the parked query answers
        t.join(60)
        assert result and time.monotonic() - changed_at < 30
        assert result[0].json() == [] and int(result[0].headers["X-Consul-Index"]) > index
        assert httpx.get(f"{base}/v1/health/service/web?index=x").status_code == 400
        assert httpx.get(f"{base}/v1/health/service/web?index=1&wait=zz").status_code == 400


def test_host_guard_and_acl(registry: ServiceRegistry) -> None:
    api = ConsulAPI(registry, NODE, acl_token=TOKEN)
    with serve_asgi(api.app()) as base:
        evil = httpx.get(f"{base}/v1/catalog/services", headers={"Host": "evil.example"})
        assert evil.status_code == 403
        assert httpx.get(f"{base}/v1/status/leader").status_code == 200  # always open
        assert httpx.get(f"{base}/v1/catalog/services").text == "Permission denied"
        wrong = httpx.get(f"{base}/v1/catalog/services", headers={"X-Consul-Token": "nope"})
        assert (wrong.status_code, wrong.text) == (403, "ACL not found")
        for headers, params in [({"X-Consul-Token": TOKEN}, {}),
                                ({"Authorization": f"Bearer {TOKEN}"}, {}),
                                ({}, {"token": TOKEN})]:  # fmt: skip
            ok = httpx.get(f"{base}/v1/catalog/services", headers=headers, params=params)
            assert ok.status_code == 200 and ok.json() == {"consul": []}


def test_catalog_index_moves_on_registrations_only(registry: ServiceRegistry) -> None:
    with Upstream() as up, serve_asgi(ConsulAPI(registry, NODE).app()) as base:
        registry.register([instance(up.port)])
        wait_for(lambda: passing_ids(base) == ["svc-1"])
        catalog = int(httpx.get(f"{base}/v1/catalog/services").headers["X-Consul-Index"])
        health = int(httpx.get(f"{base}/v1/health/service/web").headers["X-Consul-Index"])
        up.status = 500
        wait_for(lambda: passing_ids(base) == [])
        after = httpx.get(f"{base}/v1/catalog/services?index={catalog}&wait=1s", timeout=30)
        assert int(after.headers["X-Consul-Index"]) == catalog  # a health change: no wake
        moved = httpx.get(f"{base}/v1/health/service/web?index={health}&wait=1s", timeout=30)
        assert int(moved.headers["X-Consul-Index"]) > health
        registry.register([dataclasses.replace(instance(up.port, sid="b"), name="api")])
        woke = httpx.get(f"{base}/v1/catalog/services?index={catalog}&wait=30s", timeout=60)
        assert int(woke.headers["X-Consul-Index"]) > catalog
        assert woke.json() == {"api": ["v1"], "consul": [], "web": ["v1"]}
