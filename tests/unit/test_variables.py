"""Variables over the client: typed objects, CAS conflicts with the winner, pagination."""

from __future__ import annotations

import httpx
import pytest
from unit.fakenomad import FakeNomad

from nomadpaas.nomad.client import NomadClient
from nomadpaas.nomad.variables import CasConflict, Variables, items_size


@pytest.fixture
def fake() -> FakeNomad:
    return FakeNomad()


def test_get_missing_is_none(fake: FakeNomad) -> None:
    assert Variables(fake.client()).get("a/b") is None


def test_put_get_roundtrip_in_snake_case(fake: FakeNomad) -> None:
    variables = Variables(fake.client())
    written = variables.put("a/b", {"A": "1"}, cas=0)
    read = variables.get("a/b")
    assert read == written
    assert read is not None
    assert read.items == {"A": "1"}
    assert read.path == "a/b"
    assert read.modify_index > 0


def test_create_only_twice_raises_cas_conflict_with_the_current_variable(fake: FakeNomad) -> None:
    variables = Variables(fake.client())
    first = variables.put("a/b", {"A": "1"}, cas=0)
    with pytest.raises(CasConflict) as info:
        variables.put("a/b", {"A": "2"}, cas=0)
    assert info.value.current is not None
    assert info.value.current.items == {"A": "1"}
    assert info.value.index == first.modify_index
    assert variables.get("a/b") == first


def test_cas_update_and_stale_update(fake: FakeNomad) -> None:
    variables = Variables(fake.client())
    first = variables.put("a", {"A": "1"}, cas=0)
    second = variables.put("a", {"A": "2"}, cas=first.modify_index)
    with pytest.raises(CasConflict):
        variables.put("a", {"A": "3"}, cas=first.modify_index)
    with pytest.raises(CasConflict):
        variables.delete("a", cas=first.modify_index)
    variables.delete("a", cas=second.modify_index)
    assert variables.get("a") is None


def test_list_by_prefix_returns_metadata_sorted(fake: FakeNomad) -> None:
    variables = Variables(fake.client())
    for path in ("p/b", "p/a", "q/a"):
        variables.put(path, {"X": "1"})
    assert [m.path for m in variables.list("p/")] == ["p/a", "p/b"]


def test_list_follows_next_tokens() -> None:
    pages = {
        "": ([{"Path": "a"}], "tok1"),
        "tok1": ([{"Path": "b"}], "tok2"),
        "tok2": ([{"Path": "c"}], ""),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        rows, token = pages[request.url.params.get("next_token", "")]
        headers = {"X-Nomad-NextToken": token} if token else {}
        return httpx.Response(200, json=rows, headers=headers)

    client = NomadClient("http://n.test", transport=httpx.MockTransport(handler))
    assert [m.path for m in Variables(client).list("")] == ["a", "b", "c"]


def test_items_size_counts_utf8_bytes_of_keys_and_values() -> None:
    assert items_size({"AB": "cd", "E": "é"}) == 2 + 2 + 1 + 2
