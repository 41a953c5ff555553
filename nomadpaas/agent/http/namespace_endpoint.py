"""`/v1/namespaces` and `/v1/namespace/:name` (read, create/update, delete); mirrors
command/agent/namespace_endpoint.go, minimally: no quotas, no capabilities.
"""

from __future__ import annotations

import re
from typing import Any

from nomadpaas.agent.http.decode import ANY, STR, MapOf, Struct
from nomadpaas.agent.http.errors import bad_request, not_found
from nomadpaas.agent.http.server import HTTPRequest, Reply, Router
from nomadpaas.agent.server.state.schema import NAMESPACES, VARIABLES
from nomadpaas.agent.server.state.state_store import Row, Snapshot, StateStore, Txn

DEFAULT_NAMESPACE = "default"
MSG_NAMESPACE_UPSERT = "NamespaceUpsert"
MSG_NAMESPACE_DELETE = "NamespaceDelete"
VALID_NAMESPACE_NAME = re.compile(r"^[a-zA-Z0-9-]{1,128}$")
NAMESPACE_SPEC = Struct(
    "Namespace",
    {"Name": STR, "Description": STR, "Quota": STR, "Meta": MapOf(STR), "Capabilities": ANY},
)


def namespace_row(name: str, description: str, meta: Any, index: int) -> dict[str, Any]:
    return {
        "Name": name,
        "Description": description,
        "Quota": "",
        "Capabilities": None,
        "NodePoolConfiguration": None,
        "VaultConfiguration": None,
        "ConsulConfiguration": None,
        "Meta": meta,
        "CreateIndex": index,
        "ModifyIndex": index,
    }


def ensure_default_namespace(store: StateStore) -> None:
    """Bootstrap: the `default` namespace always exists (Nomad creates it at startup)."""

    def txn_fn(txn: Txn) -> None:
        if txn.get(NAMESPACES, (DEFAULT_NAMESPACE,)) is None:
            row = namespace_row(DEFAULT_NAMESPACE, "Default shared namespace", None, txn.index)
            txn.put(NAMESPACES, (DEFAULT_NAMESPACE,), row)

    store.write(MSG_NAMESPACE_UPSERT, txn_fn)


def register(router: Router) -> None:
    router.add("GET", "/v1/namespaces", namespaces_list)
    router.add("GET", "/v1/namespace/{name}", namespace_get)
    router.add(("PUT", "POST"), "/v1/namespace/{name}", namespace_upsert)
    router.add(("PUT", "POST"), "/v1/namespace", namespace_upsert)
    router.add("DELETE", "/v1/namespace/{name}", namespace_delete)


async def namespaces_list(req: HTTPRequest) -> Reply:
    prefix = req.query.get("prefix", "")

    def query(snap: Snapshot) -> tuple[list[Row], int]:
        rows = [r for r in snap.list(NAMESPACES) if r["Name"].startswith(prefix)]
        return rows, snap.table_index(NAMESPACES)

    rows, index = await req.blocking_query(query)
    return Reply(rows, index)


async def namespace_get(req: HTTPRequest) -> Reply:
    name = req.params["name"]

    def query(snap: Snapshot) -> tuple[Row | None, int]:
        row = snap.get(NAMESPACES, (name,))
        return row, row["ModifyIndex"] if row is not None else snap.table_index(NAMESPACES)

    row, index = await req.blocking_query(query)
    if row is None:
        raise not_found("namespace not found")
    return Reply(row, index)


async def namespace_upsert(req: HTTPRequest) -> Reply:
    body = await req.decode(NAMESPACE_SPEC)
    name = req.params.get("name") or body.get("Name") or ""
    if not VALID_NAMESPACE_NAME.match(name):
        raise bad_request(f"invalid name {name!r}. Must match regex {VALID_NAMESPACE_NAME.pattern}")

    def txn_fn(txn: Txn) -> None:
        old = txn.get(NAMESPACES, (name,))
        row = namespace_row(name, body.get("Description") or "", body.get("Meta"), txn.index)
        if old is not None:
            row["CreateIndex"] = old["CreateIndex"]
        txn.put(NAMESPACES, (name,), row)

    _, index = await req.run_write(req.store.write, MSG_NAMESPACE_UPSERT, txn_fn)
    return Reply(None, index)


async def namespace_delete(req: HTTPRequest) -> Reply:
    name = req.params["name"]
    if name == DEFAULT_NAMESPACE:
        raise bad_request("default namespace can not be deleted")

    def txn_fn(txn: Txn) -> str | None:
        if txn.list(VARIABLES, (name,)):
            return f'namespace "{name}" contains at least one variable'
        txn.delete(NAMESPACES, (name,))
        return None

    err, index = await req.run_write(req.store.write, MSG_NAMESPACE_DELETE, txn_fn)
    if err is not None:
        raise bad_request(err)
    return Reply(None, index)
