"""A small sync HTTP client for Nomad's API: address, token, namespace, blocking queries, errors.

Mirrors the shape of Nomad's `api/api.go` (a `Client` with `query`/`write`/`delete` that
return data plus `QueryMeta`/`WriteMeta`), in httpx. It knows no resource: the modules
beside it (`variables.py`, later jobs, allocations, …) build on `get`, `put` and `delete`.

Status → error mapping (DESIGN.md §6 exit codes):

    connection refused / timeout → NomadUnreachable (6), naming the address
    400 → InvalidInput (2)     403 → PermissionDenied (1)     404 → NomadNotFound (1)
    409 → NomadConflict (1), carrying the body and X-Nomad-Index (CAS conflicts)
    other non-2xx → NomadPaasError (1) with Nomad's text
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from nomadpaas.errors import (
    Conflict,
    InvalidInput,
    NomadPaasError,
    NomadUnreachable,
    NotFound,
    PermissionDenied,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_WAIT_S",
    "NomadClient",
    "NomadConflict",
    "NomadNotFound",
    "QueryResult",
]

#: Seconds for connect/read/write on ordinary calls; generous because a loaded 2-core CI
#: machine runs the agent beside the tests.
DEFAULT_TIMEOUT_S = 30.0
#: Nomad caps a blocking query's `wait` at 5 minutes (nomad-api.md §8).
MAX_WAIT_S = 300.0
#: Extra read time beyond `wait`: Nomad adds up to wait/16 of jitter, plus network slack.
_WAIT_SLACK_S = 5.0


def _plain_http(address: str) -> bool:
    return address.lower().startswith("http://")


class NomadNotFound(NotFound):
    """Nomad answered 404 (the object, or the path, does not exist)."""


class NomadConflict(Conflict):
    """Nomad answered 409: a check-and-set write lost.

    `data` is the decoded body (for Variables: the current variable) and `index` the
    `X-Nomad-Index` header (the current ModifyIndex), so the caller can retry.
    """

    def __init__(self, message: str, data: Any, index: int) -> None:
        super().__init__(message)
        self.data = data
        self.index = index


@dataclass(frozen=True)
class QueryResult:
    """A decoded response body plus the `X-Nomad-Index` it was read at (0 when absent)."""

    data: Any
    index: int


class NomadClient:
    """Talks to one Nomad HTTP API (a real cluster or the embedded agent).

    Usage::

        with NomadClient("http://127.0.0.1:4646", token=None) as nomad:
            result = nomad.get("/v1/vars", params={"prefix": "nomadpaas/"})
            changed = nomad.get("/v1/vars", index=result.index, wait=30)

    Parameters:
        address: base URL, e.g. `http://127.0.0.1:4646` (NOMAD_ADDR).
        token: ACL secret sent as `X-Nomad-Token`, or None.
        namespace: added as `?namespace=` to every request.
        timeout: seconds for connect, read and write of ordinary calls.
        transport: an httpx transport (tests pass `httpx.MockTransport`).
    """

    def __init__(
        self,
        address: str,
        token: str | None = None,
        namespace: str = "default",
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.address = address.rstrip("/")
        self.namespace = namespace
        self.timeout = timeout
        headers = {"User-Agent": "nomadpaas"}
        if token:
            headers["X-Nomad-Token"] = token
        self._http = httpx.Client(
            base_url=self.address,
            headers=headers,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            # httpx builds its TLS context (loading the CA bundle, ~20-30 ms: most of a
            # CLI command's first request) even for http://; a plain-HTTP address never
            # speaks TLS (redirects are not followed), so it gets a context with nothing
            # loaded. An https:// address keeps full verification.
            verify=not _plain_http(self.address),
        )

    def __enter__(self) -> NomadClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- verbs -------------------------------------------------------------------------

    def get(
        self,
        path: str,
        params: Mapping[str, str | int] | None = None,
        *,
        index: int | None = None,
        wait: float | None = None,
    ) -> QueryResult:
        """GET `path`; with `index`, a blocking query that returns once the index passes it
        or after `wait` seconds (capped at Nomad's 5 minutes)."""
        query = dict(params or {})
        timeout: httpx.Timeout | None = None
        if index is not None:
            query["index"] = index
            wait_s = min(MAX_WAIT_S if wait is None else wait, MAX_WAIT_S)
            query["wait"] = f"{max(int(wait_s * 1000), 1)}ms"
            timeout = httpx.Timeout(self.timeout, read=wait_s + wait_s / 16 + _WAIT_SLACK_S)
        return self._result(self.request("GET", path, params=query, timeout=timeout))

    def put(
        self,
        path: str,
        body: Any = None,
        params: Mapping[str, str | int] | None = None,
    ) -> QueryResult:
        """PUT a JSON body (Nomad accepts PUT and POST for every write)."""
        return self._result(self.request("PUT", path, params=params, json_body=body))

    def delete(self, path: str, params: Mapping[str, str | int] | None = None) -> QueryResult:
        """DELETE `path`; the data is None for Nomad's empty 204 answers."""
        return self._result(self.request("DELETE", path, params=params))

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """Send one request; return the 2xx response or raise the mapped error."""
        query: dict[str, str | int] = {"namespace": self.namespace, **(params or {})}
        content = None if json_body is None else json.dumps(json_body).encode()
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = self._http.request(
                method,
                path,
                params=query,
                content=content,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TimeoutException as exc:
            raise NomadUnreachable(
                f"Nomad at {self.address} did not answer {method} {path} in time ({exc!r})."
            ) from exc
        except httpx.TransportError as exc:
            raise NomadUnreachable(
                f"Cannot reach Nomad at {self.address}: {_reason(exc)}."
            ) from exc
        if response.is_success:
            return response
        raise self._error(method, path, response)

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _result(response: httpx.Response) -> QueryResult:
        data = response.json() if response.content.strip() else None
        return QueryResult(data=data, index=_index(response))

    def _error(self, method: str, path: str, response: httpx.Response) -> NomadPaasError:
        text = response.text.strip()
        status = response.status_code
        where = f"{method} {path}"
        if status == 400:
            return InvalidInput(f"Nomad rejected {where}: {text or 'bad request'}")
        if status == 403:
            return PermissionDenied(f"Nomad refused {where}: {text or 'Permission denied'}.")
        if status == 404:
            return NomadNotFound(f"Nomad has no {path}: {text or 'not found'}.")
        if status == 409:
            try:
                data = response.json()
            except ValueError:
                data = None
            return NomadConflict(
                f"Nomad refused {where}: check-and-set conflict.", data, _index(response)
            )
        return NomadPaasError(
            f"Nomad failed {where} with {status}: {text or response.reason_phrase}",
            hint=f"Check the Nomad server at {self.address}.",
        )


def _index(response: httpx.Response) -> int:
    try:
        return int(response.headers.get("X-Nomad-Index", "0"))
    except ValueError:
        return 0


def _reason(exc: httpx.TransportError) -> str:
    """The innermost OS reason ("Connection refused") rather than httpx's wrapper text."""
    cause: BaseException | None = exc
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    reason = str(cause or exc) or type(exc).__name__
    return reason
