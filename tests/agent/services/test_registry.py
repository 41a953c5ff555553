"""The service registry with real checks against a real local HTTP server: initial
statuses, status history, alloc health ("all passing, since when"), change index and
waiting, and Nomad-provider rows written to a real state store with Nomad's msg types."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from agent.services.services_support import Upstream, wait_for

from nomadpaas.agent.client.serviceregistration.checks import (
    STATUS_CRITICAL,
    STATUS_PASSING,
    STATUS_WARNING,
    CheckSpec,
)
from nomadpaas.agent.client.serviceregistration.nomad_provider import (
    MSG_DELETE_BY_ID,
    MSG_UPSERT,
    NomadProvider,
)
from nomadpaas.agent.client.serviceregistration.registry import (
    PROVIDER_CONSUL,
    PROVIDER_NOMAD,
    STATUS_PENDING,
    CheckDefinition,
    ServiceInstance,
    ServiceRegistry,
)
from nomadpaas.agent.server.state.schema import SERVICE_REGISTRATIONS
from nomadpaas.agent.server.state.state_store import Commit, StateStore

NODE_ID = "node-1"


def instance(
    port: int,
    *,
    path: str = "/status",
    provider: str = PROVIDER_CONSUL,
    initial: str = "",
    timeout_s: float = 5.0,
    alloc_id: str = "alloc-1",
    sid: str = "svc-1",
    on_update: str = "require_healthy",
) -> ServiceInstance:
    spec = CheckSpec(type="http", address="127.0.0.1", port=port, interval_s=1.0,
                     timeout_s=timeout_s, path=path)  # fmt: skip
    check = CheckDefinition(id=f"chk-{sid}", name="alive", type="http", spec=spec,
                            initial_status=initial, on_update=on_update)  # fmt: skip
    return ServiceInstance(
        id=sid, name="web", provider=provider, namespace="default", job_id="app",
        group="web", task="", alloc_id=alloc_id, alloc_name="app.web[0]",
        address="127.0.0.1", port=port, tags=("v1",), checks=(check,),
    )  # fmt: skip


@pytest.fixture
def registry() -> Iterator[ServiceRegistry]:
    reg = ServiceRegistry(NODE_ID, "node", "dc1")
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


def status(reg: ServiceRegistry, sid: str = "svc-1") -> str:
    return reg.instances()[[r.instance.id for r in reg.instances()].index(sid)].checks[0].status


def test_initial_status_holds_until_the_first_result(registry: ServiceRegistry) -> None:
    with Upstream() as up:
        up.slow_s = 3.0
        registry.register([instance(up.port, path="/slow", initial=STATUS_WARNING,
                                    timeout_s=1.5)])  # fmt: skip
        registry.register([instance(up.port, path="/slow", sid="svc-2", timeout_s=1.5)])
        assert status(registry) == STATUS_WARNING
        assert status(registry, "svc-2") == STATUS_CRITICAL  # Consul's default
        time.sleep(0.5)
        assert status(registry) == STATUS_WARNING  # the probe is still waiting
        wait_for(lambda: status(registry) == STATUS_CRITICAL)
        state = registry.instances()[0].checks[0]
    assert "context deadline exceeded" in state.output


def test_history_health_and_change_index(registry: ServiceRegistry) -> None:
    changes: list[int] = []
    registry.subscribe(changes.append)
    with Upstream() as up:
        up.status = 200
        registry.register([instance(up.port)])
        wait_for(lambda: status(registry) == STATUS_PASSING)
        health = registry.alloc_checks("alloc-1")
        assert health.healthy and health.total == 1 and health.failing == ()
        assert health.since_ns is not None and health.since_ns <= time.time_ns()
        index = registry.index
        # A blocked reader wakes when the check turns critical.
        woke: list[int] = []
        t = threading.Thread(target=lambda: woke.append(registry.wait(index, 30.0)))
        t.start()
        up.status = 503
        t.join(30.0)
        assert woke and woke[0] > index
        assert status(registry) == STATUS_CRITICAL
        health = registry.alloc_checks("alloc-1")
        assert not health.healthy and health.failing == ("alive",) and health.since_ns is None
        up.status = 200
        wait_for(lambda: status(registry) == STATUS_PASSING)
        history = [r.status for r in registry.instances()[0].checks[0].history]
        # Output-only results (same status each interval) do not move the index.
        steady = registry.index
        assert registry.wait(steady, 1.5) == steady
    assert history[0] == STATUS_PASSING and STATUS_CRITICAL in history
    assert history[-1] == STATUS_PASSING
    assert changes == sorted(changes) and len(changes) >= 3


def test_readiness_and_ignore_warnings(registry: ServiceRegistry) -> None:
    with Upstream() as up:
        up.status = 500
        registry.register([instance(up.port, on_update="ignore")])
        assert registry.alloc_checks("alloc-1").healthy  # readiness checks never block
        registry.deregister(["svc-1"])
        up.status = 429
        registry.register([instance(up.port, on_update="ignore_warnings")])
        wait_for(lambda: status(registry) == STATUS_WARNING)
        assert registry.alloc_checks("alloc-1").healthy
        assert registry.alloc_checks("unknown").total == 0


def test_deregister_stops_checks(registry: ServiceRegistry) -> None:
    with Upstream() as up:
        registry.register([instance(up.port), instance(up.port, sid="svc-2", alloc_id="b")])
        assert len(registry.runner.check_ids()) == 2
        before = registry.service_index("web")
        removed = registry.deregister_alloc("alloc-1")
        assert [i.id for i in removed] == ["svc-1"]
        assert registry.runner.check_ids() == ["chk-svc-2"]
        assert registry.service_index("web") > before
        assert [r.instance.id for r in registry.instances()] == ["svc-2"]


def test_per_allocation_reads_and_removals_see_only_that_allocation() -> None:
    """The by-allocation index behind instances(alloc_id=), deregister_alloc and
    alloc_checks stays right through re-registration, an instance moving to another
    allocation, group/task removal and removal by ID (no check runner: nothing probes)."""
    reg = ServiceRegistry(NODE_ID, "node", "dc1")
    group = [instance(1000 + i, sid=f"g{i}", alloc_id=f"a{i % 3}") for i in range(9)]
    task = replace(instance(2000, sid="t0", alloc_id="a0"), task="web")
    reg.register([*group, task])
    ids = lambda alloc: [r.instance.id for r in reg.instances(alloc_id=alloc)]  # noqa: E731
    assert ids("a0") == ["g0", "g3", "g6", "t0"] and ids("a1") == ["g1", "g4", "g7"]
    assert ids("nope") == [] and reg.alloc_checks("a2").total == 3
    reg.register([replace(group[1], port=1111)])  # changed in place: still a1's
    reg.register([replace(group[4], alloc_id="a2")])  # moved to another allocation
    assert ids("a1") == ["g1", "g7"] and ids("a2") == ["g2", "g4", "g5", "g8"]
    assert [i.id for i in reg.deregister_alloc("a0", task="")] == ["g0", "g3", "g6"]
    assert ids("a0") == ["t0"]
    reg.deregister(["g7"])
    assert ids("a1") == ["g1"]
    assert [i.id for i in reg.deregister_alloc("a2")] == ["g2", "g4", "g5", "g8"]
    assert [i.id for i in reg.deregister_alloc("a0")] == ["t0"]
    assert [r.instance.id for r in reg.instances()] == ["g1"]
    reg.register([group[0]])  # an allocation can come back
    assert ids("a0") == ["g0"]


def test_nomad_provider_rows_and_msg_types() -> None:
    store = StateStore(None)
    commits: list[Commit] = []
    store.subscribe(commits.append)
    reg = ServiceRegistry(NODE_ID, "node", "dc1", NomadProvider(store, NODE_ID, "dc1"))
    reg.start()
    try:
        with Upstream() as up:
            reg.register([instance(up.port, provider=PROVIDER_NOMAD)])
            assert status(reg) == STATUS_PENDING
            row = store.snapshot().get(SERVICE_REGISTRATIONS, ("default", "web", "svc-1"))
            assert row is not None
            assert dict(row) | {"Tags": list(row["Tags"])} == {
                "ID": "svc-1", "ServiceName": "web", "Namespace": "default", "NodeID": NODE_ID,
                "Datacenter": "dc1", "JobID": "app", "AllocID": "alloc-1", "Tags": ["v1"],
                "Address": "127.0.0.1", "Port": up.port,
                "CreateIndex": row["CreateIndex"], "ModifyIndex": row["CreateIndex"],
            }  # fmt: skip
            wait_for(lambda: status(reg) == STATUS_PASSING)
            reg.deregister(["svc-1"])
        assert store.snapshot().count(SERVICE_REGISTRATIONS) == 0
        assert [c.msg_type for c in commits] == [MSG_UPSERT, MSG_DELETE_BY_ID]
    finally:
        reg.stop()
        store.close()
