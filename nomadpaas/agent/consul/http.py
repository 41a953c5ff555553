"""The Consul-compatible HTTP app: catalog, health, agent and status endpoints over the
service registry, with Consul's blocking queries; mirrors Consul's agent/http.go
(+ catalog_endpoint.go, health_endpoint.go, agent_endpoint.go, status_endpoint.go).

Only Consul-provider instances appear here (Nomad-provider ones are in Nomad's
`/v1/services`). Blocking reads take `?index=N&wait=D`: they answer once the index of
what they read passes N (or after `wait`, default 5m, at most 10m, plus up to 1/16
jitter) and report it in `X-Consul-Index`. Same guards as the Nomad API: a loopback
`Host`, and with ACLs on, the management token as `X-Consul-Token`, a bearer token or
`?token=` (`/v1/status/*` stay open, as in Consul).
"""

from __future__ import annotations

import hmac
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nomadpaas.agent.client.serviceregistration.registry import (
    PROVIDER_CONSUL,
    RegisteredInstance,
    ServiceRegistry,
)
from nomadpaas.agent.consul.shapes import (
    ConsulNode,
    agent_service_json,
    catalog_entry,
    check_json,
    entry_passing,
    health_entry,
)
from nomadpaas.agent.http.query import parse_bool, parse_uint
from nomadpaas.agent.http.server import host_allowed
from nomadpaas.agent.structs.duration import NS_PER_S, parse_duration

CONSUL_VERSION = "1.20.5"  # the Consul whose API shapes this copies
SERVER_ADDR = "127.0.0.1:8300"  # reported as leader and peer, never bound
DEFAULT_WAIT_S = 300.0  # Consul's default blocking wait (5m)
MAX_WAIT_S = 600.0  # Consul's maximum (10m)
JITTER_FRACTION = 16
TEXT_PLAIN = "text/plain; charset=utf-8"

Handler = Callable[[Request], Awaitable[Response]]


class _Coded(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _text(code: int, message: str) -> Response:
    return Response(message, status_code=code, media_type=TEXT_PLAIN)


def _json(body: Any, index: int | None = None) -> Response:
    headers = {"X-Consul-Knownleader": "true", "X-Consul-Lastcontact": "0"}
    if index is not None:
        headers["X-Consul-Index"] = str(max(index, 1))
    return Response(
        json.dumps(body, separators=(",", ":")),
        headers=headers,
        media_type="application/json",
    )


def _token(request: Request) -> str | None:
    token = request.headers.get("x-consul-token")
    if token:
        return token
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return secret.strip()
    return request.query_params.get("token") or None


def _blocking_params(request: Request) -> tuple[int, float]:
    query = request.query_params
    wait_s = DEFAULT_WAIT_S
    if (raw := query.get("wait")) is not None:
        try:
            ns = parse_duration(raw)
        except ValueError as exc:
            raise _Coded(400, "Invalid wait time") from exc
        wait_s = min(ns / NS_PER_S, MAX_WAIT_S) if ns > 0 else DEFAULT_WAIT_S
    wait_s += random.uniform(0, wait_s / JITTER_FRACTION)
    min_index = 0
    if (raw := query.get("index")) is not None:
        try:
            min_index = parse_uint(raw)
        except ValueError as exc:
            raise _Coded(400, "Invalid index") from exc
    return min_index, wait_s


def _bool_param(request: Request, name: str) -> bool:
    """Consul's flag params: present and empty means true, else a Go bool."""
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw == "":
        return True
    try:
        return parse_bool(raw)
    except ValueError as exc:
        raise _Coded(400, f"Invalid value for ?{name}") from exc


class ConsulAPI:
    """The endpoints; `app()` wraps them in the guards."""

    def __init__(
        self,
        registry: ServiceRegistry,
        node: ConsulNode,
        *,
        bind_addr: str = "127.0.0.1",
        acl_token: str | None = None,
    ) -> None:
        self.registry = registry
        self.node = node
        self.bind_addr = bind_addr
        self.acl_token = acl_token

    def app(self) -> Starlette:
        anonymous = {"/v1/status/leader", "/v1/status/peers"}
        routes = [
            ("/v1/status/leader", self.status_leader),
            ("/v1/status/peers", self.status_peers),
            ("/v1/agent/self", self.agent_self),
            ("/v1/agent/services", self.agent_services),
            ("/v1/agent/checks", self.agent_checks),
            ("/v1/catalog/datacenters", self.catalog_datacenters),
            ("/v1/catalog/services", self.catalog_services),
            ("/v1/catalog/service/{name}", self.catalog_service),
            ("/v1/health/service/{name}", self.health_service),
            ("/v1/health/checks/{name}", self.health_checks),
        ]
        return Starlette(
            routes=[
                Route(path, self._guard(handler, path in anonymous), methods=["GET"])
                for path, handler in routes
            ]
        )

    def _guard(self, handler: Handler, anonymous: bool) -> Handler:
        async def guarded(request: Request) -> Response:
            if not host_allowed(request.headers.get("host"), self.bind_addr):
                return _text(403, "Invalid Host header: only loopback hosts may call this agent")
            try:
                if not anonymous and self.acl_token is not None:
                    token = _token(request)
                    if token is None:
                        raise _Coded(403, "Permission denied")
                    if not hmac.compare_digest(token.encode(), self.acl_token.encode()):
                        raise _Coded(403, "ACL not found")
                return await handler(request)
            except _Coded as err:
                return _text(err.code, err.message)

        return guarded

    async def _block(self, request: Request, index_of: Callable[[], int]) -> int:
        """Wait until `index_of()` passes the request's `?index=` (or `wait` ends)."""
        min_index, wait_s = _blocking_params(request)
        if min_index == 0:
            return index_of()
        deadline = time.monotonic() + wait_s
        while index_of() <= min_index:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            seen = self.registry.index
            if index_of() > min_index:
                break
            if await self.registry.wait_async(seen, left) == seen:
                break  # timed out or the agent is shutting down
        return index_of()

    def _instances(self, name: str | None = None) -> list[RegisteredInstance]:
        return self.registry.instances(provider=PROVIDER_CONSUL, name=name)

    # -- status and agent -------------------------------------------------------------

    async def status_leader(self, request: Request) -> Response:
        return _json(SERVER_ADDR)

    async def status_peers(self, request: Request) -> Response:
        return _json([SERVER_ADDR])

    async def agent_self(self, request: Request) -> Response:
        n = self.node
        return _json(
            {
                "Config": {
                    "Datacenter": n.datacenter,
                    "NodeName": n.name,
                    "NodeID": n.id,
                    "Server": True,
                    "Version": CONSUL_VERSION,
                },
                "Member": {"Name": n.name, "Addr": n.address, "Port": 8301, "Status": 1},
                "Meta": {"consul-network-segment": ""},
            }
        )

    async def agent_services(self, request: Request) -> Response:
        body = {r.instance.id: agent_service_json(self.node, r) for r in self._instances()}
        return _json(body)

    async def agent_checks(self, request: Request) -> Response:
        body = {
            s.check.id: check_json(self.node, r, s) for r in self._instances() for s in r.checks
        }
        return _json(body)

    # -- catalog ----------------------------------------------------------------------

    async def catalog_datacenters(self, request: Request) -> Response:
        return _json([self.node.datacenter])

    async def catalog_services(self, request: Request) -> Response:
        index = await self._block(request, lambda: self.registry.catalog_index)
        # Consul always lists itself; tags are the union over the service's instances.
        services: dict[str, set[str]] = {"consul": set()}
        for reg in self._instances():
            services.setdefault(reg.instance.name, set()).update(reg.instance.tags)
        return _json({name: sorted(tags) for name, tags in sorted(services.items())}, index)

    async def catalog_service(self, request: Request) -> Response:
        name = request.path_params["name"]
        index = await self._block(request, lambda: self.registry.service_index(name))
        tags = request.query_params.getlist("tag")
        body = [catalog_entry(self.node, r) for r in self._instances(name) if _has_tags(r, tags)]
        return _json(body, index)

    # -- health -----------------------------------------------------------------------

    async def health_service(self, request: Request) -> Response:
        name = request.path_params["name"]
        passing = _bool_param(request, "passing")
        index = await self._block(request, lambda: self.registry.service_index(name))
        tags = request.query_params.getlist("tag")
        body = [
            health_entry(self.node, r)
            for r in self._instances(name)
            if _has_tags(r, tags) and (not passing or entry_passing(r))
        ]
        return _json(body, index)

    async def health_checks(self, request: Request) -> Response:
        name = request.path_params["name"]
        index = await self._block(request, lambda: self.registry.service_index(name))
        body = [check_json(self.node, r, s) for r in self._instances(name) for s in r.checks]
        return _json(body, index)


def _has_tags(reg: RegisteredInstance, tags: list[str]) -> bool:
    return all(t in reg.instance.tags for t in tags)
