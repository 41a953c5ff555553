"""Nomad jobs: read, register, validate, dispatch; mirrors api/jobs.go.

Wire shapes (nomad-api.md §1): `GET /v1/job/:id` → the server Job or 404;
`PUT /v1/jobs` with `{"Job": {...}}` → `{"EvalID","JobModifyIndex","Warnings",...}`;
`PUT /v1/job/:id/dispatch?idempotency_token=T` with `{"Meta": {...}}` →
`{"DispatchedJobID","EvalID",...}`. The idempotency token is a *query* parameter: in the
body Nomad ignores it (python-nomad's mistake, §1.7). Job IDs of dispatched children
contain `/`, so IDs are percent-escaped in paths, as Nomad's own api package does.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from nomadpaas.nomad.client import NomadClient, NomadNotFound

__all__ = ["Dispatched", "Jobs", "Registered", "job_path"]


def job_path(job_id: str, suffix: str = "") -> str:
    """`/v1/job/<escaped id><suffix>`; `/` inside the ID becomes `%2F`."""
    return f"/v1/job/{quote(job_id, safe='')}{suffix}"


@dataclass(frozen=True)
class Registered:
    """The answer to a register: the evaluation (empty for parameterized jobs)."""

    eval_id: str
    job_modify_index: int
    warnings: str = ""


@dataclass(frozen=True)
class Dispatched:
    """The answer to a dispatch.

    `eval_id` is empty when Nomad recognised the idempotency token and returned the
    existing child instead of creating one.
    """

    job_id: str
    eval_id: str
    index: int = 0

    @property
    def deduplicated(self) -> bool:
        return not self.eval_id


class Jobs:
    """Job operations on one Nomad (namespace from the client)."""

    def __init__(self, client: NomadClient) -> None:
        self.client = client

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The server's Job, or None when there is no such job."""
        try:
            data = self.client.get(job_path(job_id)).data
        except NomadNotFound:
            return None
        return data if isinstance(data, dict) else None

    def register(self, job: Mapping[str, Any]) -> Registered:
        """Register (create or update) `job`, the Job object (not the wrapper)."""
        data = self.client.put("/v1/jobs", {"Job": dict(job)}).data or {}
        return Registered(
            eval_id=str(data.get("EvalID") or ""),
            job_modify_index=int(data.get("JobModifyIndex") or 0),
            warnings=str(data.get("Warnings") or ""),
        )

    def validate(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /v1/validate/job`: Nomad's verdict (`ValidationErrors`, `Warnings`)."""
        data = self.client.put("/v1/validate/job", {"Job": dict(job)}).data
        return data if isinstance(data, dict) else {}

    def dispatch(
        self,
        job_id: str,
        meta: Mapping[str, str],
        *,
        idempotency_token: str | None = None,
        payload: bytes | None = None,
    ) -> Dispatched:
        """Dispatch a child of parameterized job `job_id` with `meta`.

        With `idempotency_token`, a retry while the first child still exists returns
        that child (Nomad dedups on the token, passed as the query parameter).
        `payload`: the dispatch Payload (sent base64, nomad-api.md §1.7).
        """
        params = {"idempotency_token": idempotency_token} if idempotency_token else None
        body: dict[str, object] = {"JobID": job_id, "Meta": dict(meta)}
        if payload is not None:
            body["Payload"] = base64.b64encode(payload).decode()
        result = self.client.put(job_path(job_id, "/dispatch"), body, params=params)
        data = result.data or {}
        return Dispatched(
            job_id=str(data.get("DispatchedJobID") or ""),
            eval_id=str(data.get("EvalID") or ""),
            index=int(data.get("Index") or result.index or 0),
        )
