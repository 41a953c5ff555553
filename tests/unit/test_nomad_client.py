"""NomadClient: headers, namespace, blocking queries and status → typed error mapping."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from testsupport import free_port

from nomadpaas.errors import (
    Conflict,
    InvalidInput,
    NomadPaasError,
    NomadUnreachable,
    NotFound,
    PermissionDenied,
)
from nomadpaas.nomad.client import NomadClient, NomadConflict

Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler, **kwargs: object) -> NomadClient:
    return NomadClient("http://nomad.test:4646/", transport=httpx.MockTransport(handler), **kwargs)  # type: ignore[arg-type]


def test_token_and_namespace_are_sent_on_every_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True}, headers={"X-Nomad-Index": "42"})

    with client_for(handler, token="s3cret", namespace="team-a") as nomad:
        result = nomad.get("/v1/var/x", params={"prefix": "p"})
        nomad.put("/v1/var/x", {"Items": {"A": "1"}}, params={"cas": 0})
    assert result.data == {"ok": True}
    assert result.index == 42
    assert all(r.headers["X-Nomad-Token"] == "s3cret" for r in seen)
    assert all(r.url.params["namespace"] == "team-a" for r in seen)
    assert seen[0].url.params["prefix"] == "p"
    assert seen[1].method == "PUT"
    assert seen[1].url.params["cas"] == "0"
    assert json.loads(seen[1].content) == {"Items": {"A": "1"}}


def test_no_token_header_without_a_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    with client_for(handler) as nomad:
        nomad.get("/v1/vars")
    assert "X-Nomad-Token" not in seen[0].headers
    assert seen[0].url.params["namespace"] == "default"


def test_blocking_query_passes_index_and_wait_and_extends_the_read_timeout() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[], headers={"X-Nomad-Index": "8"})

    with client_for(handler, timeout=2.0) as nomad:
        result = nomad.get("/v1/vars", index=7, wait=60)
        nomad.get("/v1/vars", index=7, wait=10_000)  # capped at Nomad's 5 minutes
        nomad.get("/v1/vars")
    assert result.index == 8
    assert seen[0].url.params["index"] == "7"
    assert seen[0].url.params["wait"] == "60000ms"
    assert seen[0].extensions["timeout"]["read"] > 60
    assert seen[1].url.params["wait"] == "300000ms"
    assert "index" not in seen[2].url.params
    assert seen[2].extensions["timeout"]["read"] == 2.0


def test_empty_204_body_is_none() -> None:
    with client_for(lambda r: httpx.Response(204)) as nomad:
        assert nomad.delete("/v1/var/x").data is None


@pytest.mark.parametrize(
    ("status", "body", "error", "exit_code"),
    [
        (400, "variable missing required Items object", InvalidInput, 2),
        (403, "Permission denied", PermissionDenied, 1),
        (404, "variable not found", NotFound, 1),
        (500, "1 error occurred:\n\t* boom\n\n", NomadPaasError, 1),
    ],
)
def test_status_codes_map_to_typed_errors_with_nomads_text(
    status: int, body: str, error: type[NomadPaasError], exit_code: int
) -> None:
    nomad = client_for(lambda r: httpx.Response(status, text=body))
    with nomad, pytest.raises(error) as info:
        nomad.get("/v1/var/x")
    assert info.value.exit_code == exit_code
    assert body.strip().splitlines()[0] in info.value.message


def test_409_carries_the_current_object_and_index() -> None:
    current = {"Path": "x", "ModifyIndex": 9, "Items": {"A": "1"}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json=current, headers={"X-Nomad-Index": "9"})

    with client_for(handler) as nomad, pytest.raises(NomadConflict) as info:
        nomad.put("/v1/var/x", {"Items": {"A": "2"}}, params={"cas": 3})
    assert isinstance(info.value, Conflict)
    assert info.value.data == current
    assert info.value.index == 9


def test_connection_refused_is_nomad_unreachable_naming_the_address() -> None:
    address = f"http://127.0.0.1:{free_port()}"
    with NomadClient(address, timeout=5.0) as nomad, pytest.raises(NomadUnreachable) as info:
        nomad.get("/v1/vars")
    assert info.value.exit_code == 6
    assert address in info.value.message
    assert "nomadpaas up" in (info.value.hint or "")


def test_timeouts_are_nomad_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with client_for(handler) as nomad, pytest.raises(NomadUnreachable) as info:
        nomad.get("/v1/vars")
    assert "did not answer" in info.value.message


@pytest.mark.parametrize(
    ("address", "verify"),
    [("http://127.0.0.1:4646", False), ("HTTP://nomad.lan:4646", False),
     ("https://nomad.example.com:4646", True)],
)  # fmt: skip
def test_tls_verification_is_kept_for_https_and_not_built_for_plain_http(
    address: str, verify: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Building a verifying TLS context loads the CA bundle (most of a CLI command's first
    # request); a plain-HTTP address never speaks TLS, an https one must verify.
    seen: list[object] = []
    real = httpx.Client

    def spy(*args: object, **kwargs: object) -> httpx.Client:
        seen.append(kwargs.get("verify", True))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx, "Client", spy)
    with NomadClient(address):
        pass
    assert seen == [verify]
