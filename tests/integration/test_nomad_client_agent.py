"""NomadClient and Variables against the real agent: CAS, 404, 204, blocking queries."""

from __future__ import annotations

import threading
import time

import pytest
from testsupport import ServerProcess

from nomadpaas.nomad.client import NomadClient
from nomadpaas.nomad.variables import CasConflict, Variables


def test_variables_cas_lifecycle(agent: ServerProcess) -> None:
    with NomadClient(agent.url) as client:
        variables = Variables(client)
        assert variables.get("t/a") is None
        first = variables.put("t/a", {"A": "1"}, cas=0)
        assert first.items == {"A": "1"}
        with pytest.raises(CasConflict) as info:
            variables.put("t/a", {"A": "2"}, cas=0)
        assert info.value.current is not None
        assert info.value.index == first.modify_index
        second = variables.put("t/a", {"A": "2"}, cas=first.modify_index)
        assert second.modify_index > first.modify_index
        with pytest.raises(CasConflict):
            variables.delete("t/a", cas=first.modify_index)
        variables.put("t/b", {"B": "1"})
        assert [m.path for m in variables.list("t/")] == ["t/a", "t/b"]
        variables.delete("t/a", cas=second.modify_index)
        assert variables.get("t/a") is None
        assert [m.path for m in variables.list("t/")] == ["t/b"]


def test_blocking_query_wakes_on_a_write(agent: ServerProcess) -> None:
    with NomadClient(agent.url) as client:
        variables = Variables(client)
        variables.put("w/a", {"A": "1"})
        start = client.get("/v1/vars", params={"prefix": "w/"})
        assert start.index > 0

        def write_later() -> None:
            time.sleep(0.5)
            with NomadClient(agent.url) as other:
                Variables(other).put("w/b", {"B": "1"})

        writer = threading.Thread(target=write_later)
        began = time.monotonic()
        writer.start()
        try:
            woke = client.get("/v1/vars", params={"prefix": "w/"}, index=start.index, wait=60)
        finally:
            writer.join(timeout=30)
        assert time.monotonic() - began < 30
        assert woke.index > start.index
        assert sorted(row["Path"] for row in woke.data) == ["w/a", "w/b"]


def test_blocking_query_returns_after_wait_without_changes(agent: ServerProcess) -> None:
    with NomadClient(agent.url) as client:
        Variables(client).put("q/a", {"A": "1"})
        start = client.get("/v1/var/q/a")
        began = time.monotonic()
        again = client.get("/v1/var/q/a", index=start.index, wait=0.5)
        assert 0.3 < time.monotonic() - began < 20
        assert again.data["Items"] == {"A": "1"}
