"""The Variables "RPC": read, list, apply (set, CAS, delete, locks) against the state
store; mirrors nomad/variables_endpoint.go + nomad/state/state_store_variables.go.

Every apply runs inside one state-store write, so check-and-set is atomic. Lock TTLs are
tracked in memory (like Nomad's server-side lock timers, which restart on a leader
change): after an agent restart a held lock gets a fresh TTL. An expired lock is cleared
lazily, the next time an operation touches that variable.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nomadpaas.agent.server.state.frozen import thaw
from nomadpaas.agent.server.state.schema import VARIABLES
from nomadpaas.agent.server.state.state_store import Row, StateStore, Txn
from nomadpaas.agent.structs.duration import format_duration, parse_duration
from nomadpaas.agent.structs.variable import METADATA_FIELDS, empty_variable

MSG_VARIABLE_APPLY = "VarApply"  # event type derived from it: VariableUpdated / VariableDeleted


class VarOp(enum.Enum):
    SET = "set"
    CAS = "cas"
    DELETE = "delete"
    DELETE_CAS = "delete-cas"
    LOCK_ACQUIRE = "lock-acquire"
    LOCK_RENEW = "lock-renew"
    LOCK_RELEASE = "lock-release"


class VarOpResult(enum.Enum):
    OK = "ok"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class ApplyRequest:
    op: VarOp
    namespace: str
    path: str
    items: Mapping[str, str] | None = None
    cas_index: int = 0  # for CAS and DELETE_CAS
    lock_id: str = ""  # for renew/release (and a set by the lock holder)
    lock_ttl_ns: int = 0
    lock_delay_ns: int = 0


@dataclass(frozen=True)
class ApplyResponse:
    result: VarOpResult
    output: Row | None  # the variable written (None after a delete)
    conflict: Row | None  # the current variable when result is CONFLICT
    index: int


@dataclass
class _LockTimer:
    lock_id: str
    expires_at: float  # time.monotonic() seconds
    delay_s: float


class Variables:
    """Variables over one state store; `apply` blocks on fsync, so call it from a thread."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        # Guarded by the store's write lock: only touched inside write transactions.
        self._locks: dict[tuple[str, str], _LockTimer] = {}
        self._delays: dict[tuple[str, str], float] = {}  # lock-delay ends, monotonic s

    def read(self, namespace: str, path: str) -> tuple[Row | None, int]:
        snap = self._store.snapshot()
        row = snap.get(VARIABLES, (namespace, path))
        return row, (row["ModifyIndex"] if row is not None else snap.table_index(VARIABLES))

    def apply(self, req: ApplyRequest) -> ApplyResponse:
        result, index = self._store.write(MSG_VARIABLE_APPLY, lambda txn: self._apply(txn, req))
        return ApplyResponse(result[0], result[1], result[2], index)

    # -- inside the write transaction ---------------------------------------------------

    def _apply(self, txn: Txn, req: ApplyRequest) -> tuple[VarOpResult, Row | None, Row | None]:
        key = (req.namespace, req.path)
        existing = self._expire_lock(txn, key, txn.get(VARIABLES, key))
        held = existing is not None and existing.get("Lock") is not None
        op = req.op

        if op in (VarOp.CAS, VarOp.DELETE_CAS):
            if existing is None and req.cas_index != 0:
                return VarOpResult.CONFLICT, None, empty_variable()
            if existing is not None and existing["ModifyIndex"] != req.cas_index:
                return VarOpResult.CONFLICT, None, existing
        if op in (VarOp.SET, VarOp.CAS, VarOp.DELETE, VarOp.DELETE_CAS) and held:
            # A locked variable can only be changed by its lock holder.
            assert existing is not None
            if req.lock_id != existing["Lock"]["ID"]:
                return VarOpResult.CONFLICT, None, existing

        if op in (VarOp.DELETE, VarOp.DELETE_CAS):
            txn.delete(VARIABLES, key)
            self._locks.pop(key, None)
            return VarOpResult.OK, None, None
        if op in (VarOp.SET, VarOp.CAS):
            row = self._upsert(txn, req, existing, req.items or {})
            return VarOpResult.OK, row, None
        if op is VarOp.LOCK_ACQUIRE:
            return self._acquire(txn, req, existing)
        if existing is None or not held or existing["Lock"]["ID"] != req.lock_id:
            return (
                VarOpResult.CONFLICT,
                None,
                existing if existing is not None else empty_variable(),
            )
        if op is VarOp.LOCK_RENEW:
            timer = self._locks.get(key)
            if timer is not None:
                timer.expires_at = time.monotonic() + _ttl_s(existing)
            return VarOpResult.OK, existing, None
        # LOCK_RELEASE: drop the lock, keep the items.
        self._locks.pop(key, None)
        row = thaw(existing)
        row.pop("Lock", None)
        return VarOpResult.OK, self._stamp(txn, row), None

    def _acquire(
        self, txn: Txn, req: ApplyRequest, existing: Row | None
    ) -> tuple[VarOpResult, Row | None, Row | None]:
        key = (req.namespace, req.path)
        if existing is not None and existing.get("Lock") is not None:
            return VarOpResult.CONFLICT, None, existing
        if self._delays.get(key, 0.0) > time.monotonic():
            # Lock delay after an expiry: nobody may take it yet (split-brain guard).
            return (
                VarOpResult.CONFLICT,
                None,
                existing if existing is not None else empty_variable(),
            )
        items = req.items if req.items else (existing or {}).get("Items") or {}
        lock = {
            "ID": str(uuid.uuid4()),
            "TTL": format_duration(req.lock_ttl_ns),
            "LockDelay": format_duration(req.lock_delay_ns),
        }
        row = self._upsert(txn, req, existing, items, lock=lock)
        self._locks[key] = _LockTimer(
            lock["ID"], time.monotonic() + req.lock_ttl_ns / 1e9, req.lock_delay_ns / 1e9
        )
        return VarOpResult.OK, row, None

    def _upsert(
        self,
        txn: Txn,
        req: ApplyRequest,
        existing: Row | None,
        items: Mapping[str, str],
        lock: Mapping[str, str] | None = None,
    ) -> Row:
        now = time.time_ns()
        row: dict[str, Any] = {
            "Namespace": req.namespace,
            "Path": req.path,
            "CreateIndex": existing["CreateIndex"] if existing else txn.index,
            "CreateTime": existing["CreateTime"] if existing else now,
            "Items": dict(items),
        }
        if lock is not None:
            row["Lock"] = dict(lock)
        elif existing is not None and existing.get("Lock") is not None:
            row["Lock"] = thaw(existing["Lock"])  # the holder's write keeps its lock
        return self._stamp(txn, row, now)

    def _stamp(self, txn: Txn, row: dict[str, Any], now: int | None = None) -> Row:
        row["ModifyIndex"] = txn.index
        row["ModifyTime"] = now if now is not None else time.time_ns()
        # Nomad's field order, so responses read like Nomad's.
        ordered = {k: row.get(k) for k in (*METADATA_FIELDS, "Items")}
        if row.get("Lock") is not None:
            ordered["Lock"] = row["Lock"]
        return txn.put(VARIABLES, (row["Namespace"], row["Path"]), ordered)

    def _expire_lock(self, txn: Txn, key: tuple[str, str], existing: Row | None) -> Row | None:
        """Clear a lock whose TTL ran out (lazily), starting its lock delay."""
        if existing is None or existing.get("Lock") is None:
            return existing
        timer = self._locks.get(key)
        if timer is None or timer.lock_id != existing["Lock"]["ID"]:
            # Held before this agent started: the TTL starts again now.
            self._locks[key] = _LockTimer(
                existing["Lock"]["ID"], time.monotonic() + _ttl_s(existing), _delay_s(existing)
            )
            return existing
        if timer.expires_at > time.monotonic():
            return existing
        del self._locks[key]
        self._delays[key] = time.monotonic() + timer.delay_s
        row = thaw(existing)
        row.pop("Lock", None)
        return self._stamp(txn, row)


def _ttl_s(row: Row) -> float:
    return parse_duration(row["Lock"]["TTL"]) / 1e9


def _delay_s(row: Row) -> float:
    return parse_duration(row["Lock"]["LockDelay"]) / 1e9
