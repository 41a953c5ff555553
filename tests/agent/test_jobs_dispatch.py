"""Parameterized jobs through python-nomad and raw HTTP: the parent gets no eval,
dispatch makes batch children with meta and payload, the idempotency token (query
parameter) dedups, and every dispatch rule answers with Nomad's text."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
import pytest
from agent.jobs_support import client, wait_eval
from nomad.api.exceptions import BaseNomadException
from testsupport import ServerProcess

CHILD_ID = re.compile(r"^report/dispatch-\d+-[0-9a-f]{8}$")


def parent_job(payload: str = "optional") -> dict[str, Any]:
    return {
        "ID": "report",
        "Type": "batch",
        "Meta": {"owner": "ops"},
        "ParameterizedJob": {
            "Payload": payload,
            "MetaRequired": ["customer"],
            "MetaOptional": ["format"],
        },
        "TaskGroups": [
            {
                "Name": "run",
                "Tasks": [
                    {
                        "Name": "main",
                        "Driver": "raw_exec",
                        "Config": {"command": "/bin/true"},
                        "DispatchPayload": {"File": "input.txt"},
                    }
                ],
            }
        ],
    }


def test_dispatch_children(agent: ServerProcess) -> None:
    n = client(agent)
    out = n.job.register_job("report", {"Job": parent_job()})
    assert out["EvalID"] == "", "a parameterized parent gets no evaluation"
    assert n.job.get_job("report")["Status"] == "running"
    payload = base64.b64encode(b"hello").decode()
    first = n.job.dispatch_job("report", payload=payload, meta={"customer": "acme"})
    second = n.job.dispatch_job("report", meta={"customer": "globex", "format": "csv"})
    for reply in (first, second):
        assert CHILD_ID.match(reply["DispatchedJobID"]), reply
        assert wait_eval(n, reply["EvalID"])["Status"] == "complete"
        assert reply["JobCreateIndex"] > 0
    assert first["DispatchedJobID"] != second["DispatchedJobID"]
    child = n.job.get_job(first["DispatchedJobID"])
    assert (child["ParentID"], child["Dispatched"], child["Type"]) == ("report", True, "batch")
    assert child["Meta"] == {"owner": "ops", "customer": "acme"}
    assert base64.b64decode(child["Payload"]) == b"hello"
    allocs = n.job.get_allocations(first["DispatchedJobID"])
    assert [a["Name"] for a in allocs] == [f"{first['DispatchedJobID']}.run[0]"]
    stubs = {j["ID"]: j for j in n.jobs.get_jobs(prefix="report")}
    assert stubs["report"]["ParameterizedJob"] is True
    assert stubs[second["DispatchedJobID"]]["ParentID"] == "report"
    summary = n.job.get_summary("report")
    assert sum(summary["Children"].values()) == 2


def test_idempotency_token_is_a_query_parameter(agent: ServerProcess) -> None:
    n = client(agent)
    n.job.register_job("report", {"Job": parent_job()})
    url = f"{agent.url}/v1/job/report/dispatch"
    body = {"Meta": {"customer": "acme"}}
    a = httpx.post(url, params={"idempotency_token": "tok-1"}, json=body).json()
    b = httpx.post(url, params={"idempotency_token": "tok-1"}, json=body).json()
    assert a["DispatchedJobID"] == b["DispatchedJobID"]
    assert a["EvalID"] and b["EvalID"] == ""
    c = httpx.post(url, params={"idempotency_token": "tok-2"}, json=body).json()
    assert c["DispatchedJobID"] != a["DispatchedJobID"]
    # python-nomad puts the token in the body, where Nomad ignores it.
    d = n.job.dispatch_job("report", meta={"customer": "acme"}, idempotency_token="tok-1")
    assert d["DispatchedJobID"] != a["DispatchedJobID"]


@pytest.mark.parametrize(
    ("payload_mode", "body", "text"),
    [
        ("optional", {"Meta": {}}, "Dispatch did not provide required meta keys: [customer]"),
        (
            "optional",
            {"Meta": {"customer": "a", "color": "red", "bogus": "x"}},
            "Dispatch request included unpermitted metadata keys: [bogus color]",
        ),
        (
            "required",
            {"Meta": {"customer": "a"}},
            "Payload is not provided but required by parameterized job",
        ),
        (
            "forbidden",
            {"Meta": {"customer": "a"}, "Payload": base64.b64encode(b"x").decode()},
            "Payload provided but forbidden by parameterized job",
        ),
        (
            "optional",
            {"Meta": {"customer": "a"}, "Payload": base64.b64encode(b"x" * 16385).decode()},
            "Payload exceeds maximum size; 16385 > 16384",
        ),
    ],
)
def test_dispatch_rules(agent: ServerProcess, payload_mode: str, body: Any, text: str) -> None:
    n = client(agent)
    n.job.register_job("report", {"Job": parent_job(payload_mode)})
    r = httpx.post(f"{agent.url}/v1/job/report/dispatch", json=body)
    assert (r.status_code, r.text) == (500, text)


def test_dispatch_of_wrong_jobs(agent: ServerProcess) -> None:
    n = client(agent)
    with pytest.raises(BaseNomadException) as exc:
        n.job.dispatch_job("nothing", meta={"customer": "a"})
    assert exc.value.nomad_resp.text == "parameterized job not found"
    plain = {**parent_job(), "ID": "plain", "ParameterizedJob": None}
    n.job.register_job("plain", {"Job": plain})
    r = httpx.post(f"{agent.url}/v1/job/plain/dispatch", json={})
    assert (r.status_code, r.text) == (500, 'Specified job "plain" is not a parameterized job')
    n.job.register_job("report", {"Job": parent_job()})
    r = httpx.post(f"{agent.url}/v1/job/report/dispatch", json={"JobID": "other"})
    assert (r.status_code, r.text) == (400, "Job ID does not match")
    n.job.deregister_job("report")
    r = httpx.post(f"{agent.url}/v1/job/report/dispatch", json={"Meta": {"customer": "a"}})
    assert (r.status_code, r.text) == (500, 'Specified job "report" is stopped')


def test_dispatch_payload_endpoint_takes_the_raw_body(agent: ServerProcess) -> None:
    n = client(agent)
    parent = parent_job()
    parent["ParameterizedJob"]["MetaRequired"] = None
    n.job.register_job("report", {"Job": parent})
    r = httpx.post(f"{agent.url}/v1/job/report/dispatch/payload", content=b"\x00raw bytes")
    assert r.status_code == 200, r.text
    child = n.job.get_job(r.json()["DispatchedJobID"])
    assert base64.b64decode(child["Payload"]) == b"\x00raw bytes"
