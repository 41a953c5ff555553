"""Garbage collection: a stopped job whose allocs finished goes with its evals, allocs
and versions; recent or still-running things stay; terminal deployments go except a
live job's latest."""

from __future__ import annotations

from agent.server.sched_harness import Harness, service_job

from nomadpaas.agent.server.core_gc import collect
from nomadpaas.agent.server.state.schema import (
    ALLOCS,
    DEPLOYMENTS,
    EVALS,
    JOB_SUMMARIES,
    JOB_VERSIONS,
    JOBS,
)


def finish_all(h: Harness, job_id: str = "web") -> None:
    h.node_rpc.update_allocs(
        [{"ID": a["ID"], "ClientStatus": "complete"} for a in h.allocs(job_id)]
    )


def test_stopped_job_is_collected_with_everything_it_owns(h: Harness) -> None:
    h.register(service_job(count=2))
    h.jobs.deregister("default", "web")
    h.drain()
    assert collect(h.store, force=True)["Jobs"] == 0, "allocs still running on the client"
    finish_all(h)
    h.drain()
    counts = collect(h.store, force=True)
    assert counts["Jobs"] == 1
    snap = h.store.snapshot()
    for table in (JOBS, JOB_SUMMARIES, JOB_VERSIONS, EVALS, ALLOCS, DEPLOYMENTS):
        assert snap.count(table) == 0, table


def test_nothing_recent_is_collected_without_force(h: Harness) -> None:
    h.register(service_job(count=1))
    h.jobs.deregister("default", "web")
    h.drain()
    finish_all(h)
    h.drain()
    assert collect(h.store) == {"Jobs": 0, "Evals": 0, "Deployments": 0}
    assert h.store.snapshot().get(JOBS, ("default", "web")) is not None


def test_running_job_keeps_its_live_allocs_and_latest_deployment(h: Harness) -> None:
    h.register(service_job(count=1))
    h.register(service_job(count=1, args=["9"]))  # cancels the first deployment
    collect(h.store, force=True)
    snap = h.store.snapshot()
    assert snap.get(JOBS, ("default", "web")) is not None
    live = [a for a in snap.list(ALLOCS) if a["DesiredStatus"] == "run"]
    assert len(live) == 1
    (deployment,) = snap.list(DEPLOYMENTS)
    assert deployment["JobVersion"] == 1
