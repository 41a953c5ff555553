"""Nomad Variables: get, check-and-set put and delete, list by prefix; mirrors api/variables.go.

Wire shape (nomad-api.md §7): `GET /v1/var/:path` → the variable with `Items`, or 404;
`PUT /v1/var/:path?cas=N` with `{"Items": {...}}` → the stored variable, or 409 with the
current one; `DELETE /v1/var/:path?cas=N` → 204, or 409; `GET /v1/vars?prefix=` → metadata
without `Items`. PascalCase stays here: callers see snake_case `Variable` objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nomadpaas.errors import Conflict
from nomadpaas.nomad.client import NomadClient, NomadConflict, NomadNotFound

__all__ = [
    "MAX_ITEMS_BYTES",
    "CasConflict",
    "Variable",
    "VariableMetadata",
    "Variables",
    "items_size",
]

#: Nomad refuses Items larger than this many bytes of plaintext (keys + values).
MAX_ITEMS_BYTES = 64 * 1024
#: Upper bound on list pages followed, so a misbehaving server cannot loop us forever.
_MAX_PAGES = 10_000


def items_size(items: Mapping[str, str]) -> int:
    """Bytes Nomad counts against the 64 KiB limit: every key plus every value, UTF-8."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in items.items())


@dataclass(frozen=True)
class VariableMetadata:
    """One row of `GET /v1/vars`: everything but the Items."""

    path: str
    namespace: str = "default"
    create_index: int = 0
    modify_index: int = 0
    create_time: int = 0  # Unix ns
    modify_time: int = 0  # Unix ns

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> VariableMetadata:
        return cls(
            path=str(data.get("Path", "")),
            namespace=str(data.get("Namespace") or "default"),
            create_index=int(data.get("CreateIndex") or 0),
            modify_index=int(data.get("ModifyIndex") or 0),
            create_time=int(data.get("CreateTime") or 0),
            modify_time=int(data.get("ModifyTime") or 0),
        )


@dataclass(frozen=True)
class Variable(VariableMetadata):
    """A variable with its Items (string → string)."""

    items: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Variable:
        meta = VariableMetadata.from_wire(data)
        raw = data.get("Items") or {}
        items = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
        return cls(
            path=meta.path,
            namespace=meta.namespace,
            create_index=meta.create_index,
            modify_index=meta.modify_index,
            create_time=meta.create_time,
            modify_time=meta.modify_time,
            items=items,
        )


class CasConflict(Conflict):
    """A check-and-set write lost. `current` is the variable that won (None if it is gone),
    `index` its ModifyIndex: retry with `cas=index`."""

    def __init__(self, path: str, current: Variable | None, index: int) -> None:
        super().__init__(f"Variable {path} was changed by another writer (index {index}).")
        self.path = path
        self.current = current
        self.index = index


class Variables:
    """The `/v1/var` endpoints over a `NomadClient`."""

    def __init__(self, client: NomadClient) -> None:
        self._client = client

    def get(self, path: str) -> Variable | None:
        """The variable at `path`, or None when it does not exist."""
        try:
            result = self._client.get(f"/v1/var/{path}")
        except NomadNotFound:
            return None
        return Variable.from_wire(result.data)

    def put(self, path: str, items: Mapping[str, str], cas: int | None = None) -> Variable:
        """Write `items`; with `cas`, only if the ModifyIndex is still `cas` (0 = create-only).

        Raises CasConflict with the current variable when the check fails.
        """
        params = {} if cas is None else {"cas": cas}
        body = {"Path": path, "Items": dict(items)}
        try:
            result = self._client.put(f"/v1/var/{path}", body, params=params)
        except NomadConflict as exc:
            raise _cas_conflict(path, exc) from exc
        return Variable.from_wire(result.data)

    def delete(self, path: str, cas: int | None = None) -> None:
        """Delete `path` (a no-op when absent); with `cas`, only at that ModifyIndex."""
        params = {} if cas is None else {"cas": cas}
        try:
            self._client.delete(f"/v1/var/{path}", params=params)
        except NomadConflict as exc:
            raise _cas_conflict(path, exc) from exc
        except NomadNotFound:
            return

    def list(self, prefix: str = "") -> list[VariableMetadata]:
        """Metadata of every variable whose path starts with `prefix`, sorted by path."""
        rows: list[VariableMetadata] = []
        params: dict[str, str | int] = {"prefix": prefix}
        for _ in range(_MAX_PAGES):
            response = self._client.request("GET", "/v1/vars", params=params)
            rows.extend(VariableMetadata.from_wire(r) for r in (response.json() or []))
            next_token = response.headers.get("X-Nomad-NextToken")
            if not next_token:
                break
            params = {"prefix": prefix, "next_token": next_token}
        return sorted(rows, key=lambda r: r.path)


def _cas_conflict(path: str, exc: NomadConflict) -> CasConflict:
    current = Variable.from_wire(exc.data) if isinstance(exc.data, Mapping) else None
    index = exc.index or (current.modify_index if current else 0)
    return CasConflict(path, current, index)
