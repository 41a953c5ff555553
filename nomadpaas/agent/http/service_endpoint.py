"""Nomad-provider service discovery and check results: `/v1/services`,
`/v1/service/:name`, `/v1/service/:name/:id` (DELETE), `/v1/job/:id/services` and
`/v1/allocation/:id/checks`; mirrors command/agent/service_registration_endpoint.go and
the alloc checks part of command/agent/alloc_endpoint.go.

Registrations are read from the state store (`service_registrations`, written by the
client's Nomad provider); check results come from the client's registry
(`deps.extra["services"]`), as Nomad's come from the client that runs them.
"""

from __future__ import annotations

from typing import Any

from nomadpaas.agent.client.serviceregistration.nomad_provider import (
    MSG_DELETE_BY_ID,
    registration_key,
)
from nomadpaas.agent.client.serviceregistration.registry import (
    PROVIDER_NOMAD,
    ServiceRegistry,
    nomad_status,
)
from nomadpaas.agent.http.errors import CodedError, not_found
from nomadpaas.agent.http.server import HTTPRequest, Reply, Router
from nomadpaas.agent.server.state.schema import ALLOCS, SERVICE_REGISTRATIONS
from nomadpaas.agent.server.state.state_store import Row, Snapshot, Txn

ALL_NAMESPACES = "*"
NS_PER_S = 1_000_000_000
MODE_HEALTHINESS = "healthiness"
MODE_READINESS = "readiness"  # on_update = "ignore"


def register(router: Router) -> None:
    router.add("GET", "/v1/services", services_list)
    router.add("GET", "/v1/service/{name}", service_get)
    router.add("DELETE", "/v1/service/{name}/{service_id}", service_delete)
    router.add("GET", "/v1/job/{job_id}/services", job_services)
    router.add("GET", "/v1/allocation/{alloc_id}/checks", alloc_checks)


def _in_namespace(row: Row, namespace: str) -> bool:
    return namespace == ALL_NAMESPACES or row["Namespace"] == namespace


async def services_list(req: HTTPRequest) -> Reply:
    """Service names and their tags, grouped by namespace (ServiceRegistrationListStub)."""
    namespace = req.namespace()

    def query(snap: Snapshot) -> tuple[list[dict[str, Any]], int]:
        grouped: dict[str, dict[str, set[str]]] = {}
        for row in snap.list(SERVICE_REGISTRATIONS):
            if _in_namespace(row, namespace):
                tags = grouped.setdefault(row["Namespace"], {}).setdefault(
                    row["ServiceName"], set()
                )
                tags.update(row["Tags"] or [])
        out = [
            {
                "Namespace": ns,
                "Services": [
                    {"ServiceName": name, "Tags": sorted(tags)}
                    for name, tags in sorted(services.items())
                ],
            }
            for ns, services in sorted(grouped.items())
        ]
        return out, snap.table_index(SERVICE_REGISTRATIONS)

    rows, index = await req.blocking_query(query)
    return Reply(rows, index)


async def service_get(req: HTTPRequest) -> Reply:
    """Every registration of one service name in the namespace (`?tag=` filters)."""
    namespace = req.namespace()
    name = req.params["name"]
    tag = req.query.get("tag")

    def query(snap: Snapshot) -> tuple[list[Row], int]:
        rows = [
            r
            for r in snap.list(SERVICE_REGISTRATIONS)
            if r["ServiceName"] == name
            and _in_namespace(r, namespace)
            and (tag is None or tag in (r["Tags"] or []))
        ]
        rows.sort(key=lambda r: r["CreateIndex"])
        return rows, snap.table_index(SERVICE_REGISTRATIONS)

    rows, index = await req.blocking_query(query)
    return Reply(rows, index)


async def service_delete(req: HTTPRequest) -> Reply:
    namespace = req.namespace()
    key = registration_key(namespace, req.params["name"], req.params["service_id"])

    def txn_fn(txn: Txn) -> bool:
        return txn.delete(SERVICE_REGISTRATIONS, key) is not None

    found, index = await req.run_write(req.store.write, MSG_DELETE_BY_ID, txn_fn)
    if not found:
        raise not_found(f'service registration not found: "{key[2]}"')
    return Reply(None, index)


async def job_services(req: HTTPRequest) -> Reply:
    namespace = req.namespace()
    job_id = req.params["job_id"]

    def query(snap: Snapshot) -> tuple[list[Row], int]:
        rows = [
            r
            for r in snap.list(SERVICE_REGISTRATIONS)
            if r["JobID"] == job_id and _in_namespace(r, namespace)
        ]
        rows.sort(key=lambda r: r["CreateIndex"])
        return rows, snap.table_index(SERVICE_REGISTRATIONS)

    rows, index = await req.blocking_query(query)
    return Reply(rows, index)


async def alloc_checks(req: HTTPRequest) -> Reply:
    """The latest result of each Nomad-provider check of the allocation."""
    alloc_id = req.params["alloc_id"]
    if req.store.snapshot().get(ALLOCS, (alloc_id,)) is None:
        raise not_found("alloc not found")
    registry = req.deps.extra.get("services")
    if not isinstance(registry, ServiceRegistry):
        raise CodedError(500, "service registry not running")
    out: dict[str, Any] = {}
    for reg in registry.instances(provider=PROVIDER_NOMAD, alloc_id=alloc_id):
        inst = reg.instance
        for state in reg.checks:
            out[state.check.id] = {
                "ID": state.check.id,
                "Check": state.check.name,
                "Group": inst.alloc_name,
                "Mode": MODE_READINESS if state.check.on_update == "ignore" else MODE_HEALTHINESS,
                "Output": state.output,
                "Service": inst.name,
                "Status": nomad_status(state.status),
                "StatusCode": state.status_code,
                "Task": inst.task,
                "Timestamp": state.timestamp_ns // NS_PER_S,
            }
    return Reply(out)
