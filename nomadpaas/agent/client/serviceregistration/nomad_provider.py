"""Writes Nomad-provider service registrations into the server's state; mirrors
client/serviceregistration/nomad/nomad.go (the client side) and
nomad/state/state_store_service_registration.go (the table it writes).

Rows live in the `service_registrations` table keyed `(namespace, service_name, id)`, as
ServiceRegistration objects. Every write uses the raft message type Nomad uses, so the
event stream derives `Service` events (`ServiceRegistration` / `ServiceDeregistration`)
from the commit like any other. Check results are not stored here: as in Nomad they stay
on the client (the registry) and are served by `/v1/allocation/:id/checks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from nomadpaas.agent.server.state.schema import SERVICE_REGISTRATIONS
from nomadpaas.agent.server.state.state_store import StateStore, Txn

MSG_UPSERT = "ServiceRegistrationUpsertRequestType"
MSG_DELETE_BY_ID = "ServiceRegistrationDeleteByIDRequestType"
MSG_DELETE_BY_NODE = "ServiceRegistrationDeleteByNodeIDRequestType"


class Registration(Protocol):
    """What a registration row is built from (registry.ServiceInstance fits)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def job_id(self) -> str: ...
    @property
    def alloc_id(self) -> str: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int: ...


def registration_key(namespace: str, service_name: str, service_id: str) -> tuple[str, str, str]:
    return (namespace, service_name, service_id)


class NomadProvider:
    """The Nomad service-discovery provider of one node. Blocking (fsync): call it from
    a thread, never from an event loop."""

    def __init__(self, store: StateStore, node_id: str, datacenter: str) -> None:
        self.store = store
        self.node_id = node_id
        self.datacenter = datacenter

    def upsert(self, instances: Sequence[Registration]) -> int:
        """Create or update rows; unchanged rows are not rewritten (no index move)."""
        if not instances:
            return self.store.latest_index

        def txn_fn(txn: Txn) -> None:
            for inst in instances:
                key = registration_key(inst.namespace, inst.name, inst.id)
                old = txn.get(SERVICE_REGISTRATIONS, key)
                row = self._row(inst)
                if old is not None and _same(old, row):
                    continue
                row["CreateIndex"] = old["CreateIndex"] if old is not None else txn.index
                row["ModifyIndex"] = txn.index
                txn.put(SERVICE_REGISTRATIONS, key, row)

        _, index = self.store.write(MSG_UPSERT, txn_fn)
        return index

    def delete(self, service_ids: Iterable[str]) -> int:
        """Delete rows by service ID (any namespace or name)."""
        wanted = set(service_ids)
        if not wanted:
            return self.store.latest_index

        def txn_fn(txn: Txn) -> None:
            for row in txn.list(SERVICE_REGISTRATIONS):
                if row["ID"] in wanted:
                    txn.delete(
                        SERVICE_REGISTRATIONS,
                        registration_key(row["Namespace"], row["ServiceName"], row["ID"]),
                    )

        _, index = self.store.write(MSG_DELETE_BY_ID, txn_fn)
        return index

    def delete_node(self) -> int:
        """Drop every row of this node: the agent (re)starts and its hooks re-register
        what is still running, so nothing stale survives a crash."""

        def txn_fn(txn: Txn) -> None:
            for row in txn.list(SERVICE_REGISTRATIONS):
                if row["NodeID"] == self.node_id:
                    txn.delete(
                        SERVICE_REGISTRATIONS,
                        registration_key(row["Namespace"], row["ServiceName"], row["ID"]),
                    )

        _, index = self.store.write(MSG_DELETE_BY_NODE, txn_fn)
        return index

    def _row(self, inst: Registration) -> dict[str, Any]:
        return {
            "ID": inst.id,
            "ServiceName": inst.name,
            "Namespace": inst.namespace,
            "NodeID": self.node_id,
            "Datacenter": self.datacenter,
            "JobID": inst.job_id,
            "AllocID": inst.alloc_id,
            "Tags": list(inst.tags),
            "Address": inst.address,
            "Port": inst.port,
        }


def _same(old: Any, row: dict[str, Any]) -> bool:
    return all(_plain(old.get(k)) == v for k, v in row.items())


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
