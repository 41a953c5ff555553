"""The case-insensitive request decoder (Go encoding/json semantics)."""

from __future__ import annotations

import pytest

from nomadpaas.agent.http.decode import (
    ANY,
    BOOL,
    INT,
    STR,
    DecodeError,
    ListOf,
    MapOf,
    Struct,
    decode_body,
)

TASK = Struct("Task", {"Name": STR, "Env": MapOf(STR), "Config": ANY})
SPEC = Struct(
    "Deployment",
    {
        "DeploymentID": STR,
        "HealthyAllocationIDs": ListOf(STR),
        "UnhealthyAllocationIDs": ListOf(STR),
        "Count": INT,
        "All": BOOL,
        "Meta": MapOf(STR),
        "Tasks": ListOf(TASK),
    },
)


def test_keys_match_case_insensitively_and_unknown_keys_drop() -> None:
    raw = b'{"deploymentid":"d1","UnHealthyAllocationIDs":["a"],"COUNT":3,"bogus":1}'
    assert decode_body(raw, SPEC) == {
        "DeploymentID": "d1",
        "UnhealthyAllocationIDs": ["a"],
        "Count": 3,
    }


def test_free_form_maps_keep_user_keys_but_nested_structs_are_canonicalised() -> None:
    raw = (
        b'{"meta":{"lowerKey":"v","UPPER":"w"},'
        b'"tasks":[{"name":"web","env":{"path":"x"},"config":{"command":"run","Args":["a"]}}]}'
    )
    assert decode_body(raw, SPEC) == {
        "Meta": {"lowerKey": "v", "UPPER": "w"},
        "Tasks": [
            {"Name": "web", "Env": {"path": "x"}, "Config": {"command": "run", "Args": ["a"]}}
        ],
    }


def test_exact_match_wins_over_folded_match() -> None:
    spec = Struct("S", {"ID": STR, "Id": STR})
    assert decode_body(b'{"Id":"x","id":"y"}', spec) == {"Id": "y"}
    assert decode_body(b'{"ID":"x"}', spec) == {"ID": "x"}


def test_null_is_kept_and_absent_fields_stay_absent() -> None:
    assert decode_body(b'{"Meta":null}', SPEC) == {"Meta": None}


GO = "json: cannot unmarshal"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"Meta":{"a":1}}', f"{GO} number into Go struct field Deployment.Meta of type string"),
        (b'{"Count":"3"}', f"{GO} string into Go struct field Deployment.Count of type int"),
        (b'{"All":"true"}', f"{GO} string into Go struct field Deployment.All of type bool"),
        (b'{"Count":true}', f"{GO} bool into Go struct field Deployment.Count of type int"),
        (b'[1]', f"{GO} array into Go value of type Deployment"),
        (b'{"Tasks":[{"Name":5}]}', f"{GO} number into Go struct field Deployment.Tasks.Name"),
        (b'{"Count": ', "unexpected EOF"),
        (b"{'a': 1}", "invalid character"),
        (b"", "Request body is empty"),
        (b"  \n", "Request body is empty"),
    ],
)  # fmt: skip
def test_bad_bodies_raise_go_style_messages(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode_body(raw, SPEC)
    assert str(err.value).startswith(message)
