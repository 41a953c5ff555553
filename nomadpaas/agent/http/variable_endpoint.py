"""`/v1/var/:path` and `/v1/vars`: read, list, set/CAS, delete, locks; mirrors
command/agent/variable_endpoint.go.
"""

from __future__ import annotations

from typing import Any

from nomadpaas.agent.http.decode import ANY, INT64, STR, UINT64, MapOf, Struct
from nomadpaas.agent.http.errors import ERR_INVALID_METHOD, CodedError, bad_request, not_found
from nomadpaas.agent.http.query import parse_uint
from nomadpaas.agent.http.server import HTTPRequest, Reply, Router
from nomadpaas.agent.server.state.schema import VARIABLES
from nomadpaas.agent.server.state.state_store import Row, Snapshot
from nomadpaas.agent.server.variables_endpoint import (
    ApplyRequest,
    ApplyResponse,
    VarOp,
    VarOpResult,
)
from nomadpaas.agent.structs.duration import parse_duration
from nomadpaas.agent.structs.variable import (
    ALL_NAMESPACES,
    DEFAULT_LOCK_DELAY_NS,
    DEFAULT_LOCK_TTL_NS,
    MAX_LOCK_TTL_NS,
    MIN_LOCK_TTL_NS,
    metadata,
    validate_items,
    validate_path,
)

VARIABLE_LOCK_SPEC = Struct("VariableLock", {"ID": STR, "TTL": ANY, "LockDelay": ANY})
VARIABLE_SPEC = Struct(
    "VariableDecrypted",
    {
        "Namespace": STR,
        "Path": STR,
        "CreateIndex": UINT64,
        "CreateTime": INT64,
        "ModifyIndex": UINT64,
        "ModifyTime": INT64,
        "Items": MapOf(STR),
        "Lock": VARIABLE_LOCK_SPEC,
    },
)
LOCK_OPS = {
    "lock-acquire": VarOp.LOCK_ACQUIRE,
    "lock-renew": VarOp.LOCK_RENEW,
    "lock-release": VarOp.LOCK_RELEASE,
}


def register(router: Router) -> None:
    router.add("GET", "/v1/vars", variables_list)
    # The specific handler checks methods itself and answers 400, not 405 (as Nomad).
    router.add("*", "/v1/var/{path:path}", variable_specific, bad_method_code=400)


async def variables_list(req: HTTPRequest) -> Reply:
    namespace = req.namespace()
    prefix = req.query.get("prefix", "")

    def query(snap: Snapshot) -> tuple[list[dict[str, Any]], int]:
        scope = () if namespace == ALL_NAMESPACES else (namespace,)
        rows = [
            metadata(row) for row in snap.list(VARIABLES, scope) if row["Path"].startswith(prefix)
        ]
        return rows, snap.table_index(VARIABLES)

    rows, index = await req.blocking_query(query)
    return Reply(rows, index)


async def variable_specific(req: HTTPRequest) -> Reply:
    path = req.params["path"]
    if not path:
        raise bad_request("missing variable path")
    if req.method in ("GET", "HEAD"):
        return await _query(req, path)
    if req.method in ("PUT", "POST"):
        return await _upsert(req, path)
    if req.method == "DELETE":
        return await _delete(req, path)
    raise bad_request(ERR_INVALID_METHOD)


async def _query(req: HTTPRequest, path: str) -> Reply:
    namespace = req.namespace()

    def query(snap: Snapshot) -> tuple[Row | None, int]:
        row = snap.get(VARIABLES, (namespace, path))
        return row, row["ModifyIndex"] if row is not None else snap.table_index(VARIABLES)

    row, index = await req.blocking_query(query)
    if row is None:
        raise not_found("variable not found")
    return Reply(row, index)


async def _upsert(req: HTTPRequest, path: str) -> Reply:
    lock_ops = [op for name, op in LOCK_OPS.items() if name in req.query]
    cas = _parse_cas(req)
    if lock_ops and cas is not None:
        raise bad_request("CAS can't be used with lock operations")
    body = await req.decode(VARIABLE_SPEC)
    items = body.get("Items") or {}
    if not lock_ops and not items:
        raise bad_request("variable missing required Items object")
    namespace = _write_namespace(req, body)
    _validate(path, items)
    lock = body.get("Lock") or {}
    if lock_ops:
        op = lock_ops[0]
        ttl = _duration(lock.get("TTL"), DEFAULT_LOCK_TTL_NS, "TTL")
        delay = _duration(lock.get("LockDelay"), DEFAULT_LOCK_DELAY_NS, "LockDelay")
        if op is VarOp.LOCK_ACQUIRE and not MIN_LOCK_TTL_NS <= ttl <= MAX_LOCK_TTL_NS:
            raise bad_request("lock TTL must be between 10s and 24h0m0s")
        if op is not VarOp.LOCK_ACQUIRE and not lock.get("ID"):
            raise bad_request("missing lock ID")
        apply = ApplyRequest(
            op, namespace, path, items, lock_id=lock.get("ID") or "", lock_ttl_ns=ttl,
            lock_delay_ns=delay,
        )  # fmt: skip
    else:
        op = VarOp.CAS if cas is not None else VarOp.SET
        apply = ApplyRequest(
            op, namespace, path, items, cas_index=cas or 0, lock_id=lock.get("ID") or ""
        )
    out: ApplyResponse = await req.run_write(req.deps.variables.apply, apply)
    if out.result is VarOpResult.CONFLICT:
        return _conflict(out)
    assert out.output is not None
    if op in (VarOp.LOCK_RENEW, VarOp.LOCK_RELEASE):
        # Nomad answers these with the metadata only.
        return Reply(metadata(out.output), out.output["ModifyIndex"])
    return Reply(out.output, out.output["ModifyIndex"])


async def _delete(req: HTTPRequest, path: str) -> Reply:
    cas = _parse_cas(req)
    namespace = req.namespace()
    if namespace == ALL_NAMESPACES:
        raise bad_request('can not target wildcard ("*")namespace')
    op = VarOp.DELETE_CAS if cas is not None else VarOp.DELETE
    apply = ApplyRequest(op, namespace, path, cas_index=cas or 0)
    out: ApplyResponse = await req.run_write(req.deps.variables.apply, apply)
    if out.result is VarOpResult.CONFLICT:
        return _conflict(out)
    return Reply(None, out.index, status=204)


def _conflict(out: ApplyResponse) -> Reply:
    conflict = out.conflict
    assert conflict is not None
    return Reply(conflict, conflict["ModifyIndex"], status=409)


def _parse_cas(req: HTTPRequest) -> int | None:
    raw = req.query.get("cas")
    if not raw:
        return None
    try:
        return parse_uint(raw)
    except ValueError as exc:
        raise bad_request(f"can not parse cas: {exc}") from exc


def _write_namespace(req: HTTPRequest, body: dict[str, Any]) -> str:
    namespace = req.query.get("namespace") or body.get("Namespace") or "default"
    if namespace == ALL_NAMESPACES:
        raise bad_request('can not target wildcard ("*")namespace')
    return str(namespace)


def _validate(path: str, items: dict[str, str]) -> None:
    for err in (validate_path(path), validate_items(items)):
        if err is not None:
            raise CodedError(400, err)


def _duration(value: Any, default_ns: int, name: str) -> int:
    """A lock duration: Go string ("15s", as the API sends) or integer ns; "" = default."""
    if value is None or value == "" or value == 0:
        return default_ns
    if isinstance(value, bool):
        raise bad_request(f"invalid lock {name}: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise bad_request(f"invalid lock {name}: {exc}") from exc
    raise bad_request(f"invalid lock {name}: {value!r}")
