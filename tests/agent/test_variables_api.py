"""The Variables API against a real agent process, driven by python-nomad (and httpx
where python-nomad cannot reach: headers, raw bodies, locks)."""

from __future__ import annotations

import httpx
import nomad
import pytest
from nomad.api import exceptions
from testsupport import ServerProcess


def client(agent: ServerProcess, token: str | None = None) -> nomad.Nomad:
    return nomad.Nomad(host="127.0.0.1", port=agent.port, token=token, timeout=10)


def test_create_conflict_update_delete_cycle(agent: ServerProcess) -> None:
    n = client(agent)
    created = n.variable.create_variable("apps/web", {"Items": {"A": "1"}}, cas=0)
    assert created["Path"] == "apps/web" and created["Namespace"] == "default"
    assert created["Items"] == {"A": "1"}
    assert created["CreateIndex"] == created["ModifyIndex"] > 0
    assert created["CreateTime"] == created["ModifyTime"] > 1_600_000_000 * 10**9

    with pytest.raises(exceptions.VariableConflict) as conflict:
        n.variable.create_variable("apps/web", {"Items": {"A": "2"}}, cas=0)
    resp = conflict.value.nomad_resp
    assert resp.status_code == 409
    assert resp.json()["Items"] == {"A": "1"}
    assert resp.headers["X-Nomad-Index"] == str(created["ModifyIndex"])

    with pytest.raises(exceptions.VariableConflict):
        n.variable.create_variable(
            "apps/web", {"Items": {"A": "2"}}, cas=created["ModifyIndex"] + 99
        )

    updated = n.variable.create_variable(
        "apps/web", {"Items": {"A": "2"}}, cas=created["ModifyIndex"]
    )
    assert updated["ModifyIndex"] > created["ModifyIndex"]
    assert updated["CreateIndex"] == created["CreateIndex"]
    assert n.variable.get_variable("apps/web")["Items"] == {"A": "2"}

    with pytest.raises(exceptions.VariableConflict):
        n.variable.delete_variable("apps/web", cas=created["ModifyIndex"])
    deleted = n.variable.delete_variable("apps/web", cas=updated["ModifyIndex"])
    assert deleted.status_code == 204 and deleted.content == b""
    with pytest.raises(exceptions.URLNotFoundNomadException) as missing:
        n.variable.get_variable("apps/web")
    assert missing.value.nomad_resp.text == "variable not found"


def test_cas_on_missing_variable_conflicts(agent: ServerProcess) -> None:
    with pytest.raises(exceptions.VariableConflict):
        client(agent).variable.create_variable("nope", {"Items": {"a": "b"}}, cas=5)


def test_list_by_prefix_and_namespaces(agent: ServerProcess) -> None:
    n = client(agent)
    for path in ("apps/b", "apps/a", "other/x"):
        n.variable.create_variable(path, {"Items": {"k": "v"}})
    n.variable.create_variable("apps/a", {"Items": {"k": "v"}}, namespace="staging")

    listed = n.variables.get_variables(prefix="apps/")
    assert [v["Path"] for v in listed] == ["apps/a", "apps/b"]
    assert all("Items" not in v for v in listed)
    assert {v["Namespace"] for v in listed} == {"default"}

    staging = n.variables.get_variables(namespace="staging")
    assert [(v["Namespace"], v["Path"]) for v in staging] == [("staging", "apps/a")]
    everything = n.variables.get_variables(namespace="*")
    assert len(everything) == 4
    with pytest.raises(exceptions.URLNotFoundNomadException):
        n.variable.get_variable("apps/a", namespace="prod")
    assert n.variable.get_variable("apps/a", namespace="staging")["Namespace"] == "staging"


INVALID_WRITES = [
    ("bad%20path", {"Items": {"a": "b"}}, 'invalid path "bad path"'),
    ("nomad", {"Items": {"a": "b"}}, '"nomad" is a reserved top-level directory path'),
    ("nomad/apps", {"Items": {"a": "b"}}, 'only paths at "nomad/jobs"'),
    ("nomad/job-templates", {"Items": {"a": "b"}}, '"nomad/job-templates" is a reserved'),
    ("x" * 129, {"Items": {"a": "b"}}, "invalid path"),
    ("ok", {}, "variable missing required Items object"),
    ("ok", {"Items": {}}, "variable missing required Items object"),
    ("ok", {"Items": {"a": 1}}, "json: cannot unmarshal number into Go struct field"),
    ("ok", {"Items": {"a": "x" * 70_000}}, "variables are limited to 64KiB in total size"),
    ("ok?cas=abc", {"Items": {"a": "b"}}, "can not parse cas"),
    ("ok?namespace=*", {"Items": {"a": "b"}}, 'can not target wildcard ("*")namespace'),
]


def test_invalid_writes_are_400_and_change_nothing(agent: ServerProcess) -> None:
    for path, body, message in INVALID_WRITES:
        r = httpx.put(f"{agent.url}/v1/var/{path}", json=body)
        assert r.status_code == 400, (path, r.text)
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.text.startswith(message), (path, r.text)
    with pytest.raises(exceptions.BadRequestNomadException):
        client(agent).variable.create_variable("nomad", {"Items": {"a": "b"}})
    assert httpx.get(f"{agent.url}/v1/vars", params={"namespace": "*"}).json() == []


def test_nomad_jobs_path_is_allowed(agent: ServerProcess) -> None:
    out = client(agent).variable.create_variable("nomad/jobs/web", {"Items": {"a": "b"}})
    assert out["Path"] == "nomad/jobs/web"


def test_malformed_json_is_400_and_changes_nothing(agent: ServerProcess) -> None:
    n = client(agent)
    n.variable.create_variable("keep", {"Items": {"a": "b"}})
    before = httpx.get(f"{agent.url}/v1/vars")
    for raw in (b'{"Items": {"a": "c"', b"not json", b""):
        r = httpx.put(f"{agent.url}/v1/var/keep", content=raw)
        assert r.status_code == 400, raw
    assert httpx.put(f"{agent.url}/v1/var/keep", content=b"").text == "Request body is empty"
    after = httpx.get(f"{agent.url}/v1/vars")
    assert after.headers["X-Nomad-Index"] == before.headers["X-Nomad-Index"]
    assert n.variable.get_variable("keep")["Items"] == {"a": "b"}


def test_request_keys_are_case_insensitive(agent: ServerProcess) -> None:
    r = httpx.put(f"{agent.url}/v1/var/ci", json={"items": {"Key": "v"}})
    assert r.status_code == 200
    assert r.json()["Items"] == {"Key": "v"}
    assert r.headers["X-Nomad-Index"] == str(r.json()["ModifyIndex"])


def test_methods_and_unknown_paths(agent: ServerProcess) -> None:
    assert httpx.request("PATCH", f"{agent.url}/v1/var/x").status_code == 400
    assert httpx.request("PATCH", f"{agent.url}/v1/var/x").text == "Invalid method"
    r = httpx.delete(f"{agent.url}/v1/vars")
    assert (r.status_code, r.text) == (405, "Invalid method")
    r = httpx.get(f"{agent.url}/v1/no/such/thing")
    assert (r.status_code, r.content) == (404, b"")
    r = httpx.get(f"{agent.url}/v1/var/")
    assert (r.status_code, r.text) == (400, "missing variable path")


def test_locks(agent: ServerProcess) -> None:
    url = f"{agent.url}/v1/var/locks/leader"
    acquired = httpx.put(
        url + "?lock-acquire", json={"Items": {"holder": "a"}, "Lock": {"TTL": "15s"}}
    )
    assert acquired.status_code == 200, acquired.text
    lock = acquired.json()["Lock"]
    assert lock["TTL"] == "15s" and lock["LockDelay"] == "15s" and len(lock["ID"]) == 36

    again = httpx.put(url + "?lock-acquire", json={"Items": {"holder": "b"}})
    assert again.status_code == 409 and again.json()["Lock"]["ID"] == lock["ID"]
    assert httpx.put(url, json={"Items": {"holder": "c"}}).status_code == 409
    assert httpx.put(url + "?lock-acquire&cas=1", json={}).text == (
        "CAS can't be used with lock operations"
    )
    renewed = httpx.put(url + "?lock-renew", json={"Lock": {"ID": lock["ID"]}})
    assert renewed.status_code == 200 and "Items" not in renewed.json()
    assert httpx.put(url + "?lock-release", json={"Lock": {"ID": "wrong"}}).status_code == 409
    released = httpx.put(url + "?lock-release", json={"Lock": {"ID": lock["ID"]}})
    assert released.status_code == 200 and "Lock" not in released.json()
    assert httpx.get(url).json()["Items"] == {"holder": "a"}
    assert httpx.put(url, json={"Items": {"holder": "c"}}).status_code == 200


def test_pretty_indents(agent: ServerProcess) -> None:
    client(agent).variable.create_variable("p", {"Items": {"a": "b"}})
    assert "\n    " in httpx.get(f"{agent.url}/v1/var/p?pretty").text
    assert "\n" not in httpx.get(f"{agent.url}/v1/var/p").text
