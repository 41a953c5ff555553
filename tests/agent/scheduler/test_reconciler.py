"""The reconciler: JSON cases from cases/*.json run by one generic test, plus invariants."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from agent.scheduler.reconcile_case import (
    T0_NS,
    base_job,
    build_alloc,
    build_deployment,
    build_jobs,
    versioned,
)
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from nomadpaas.agent.scheduler.reconciler import ReconcileResults, reconcile

CASES = sorted((Path(__file__).parent / "cases").glob("*.json"))
NS_PER_S = 1_000_000_000


def summarize(r: ReconcileResults) -> dict[str, Any]:
    """The result in the cases' expectation format (falsy flags and zero counts left out)."""
    place = []
    for p in r.place:
        item: dict[str, Any] = {"name": p.name}
        item.update(
            {
                k: v
                for k, v in (("canary", p.canary), ("reschedule", p.reschedule), ("lost", p.lost))
                if v
            }
        )
        if p.previous_alloc_id:
            item["previous"] = p.previous_alloc_id
        place.append(item)
    deployment = None
    if r.deployment is not None:
        deployment = {
            "Status": r.deployment["Status"],
            "StatusDescription": r.deployment["StatusDescription"],
            "groups": {
                g: {"DesiredTotal": s["DesiredTotal"], "DesiredCanaries": s["DesiredCanaries"]}
                for g, s in r.deployment["TaskGroups"].items()
            },
        }
    return {
        "place": sorted(place, key=lambda p: (p["name"], p.get("previous", ""))),
        "stop": {
            s.alloc_id: (f"{s.client_status}: " if s.client_status else "") + s.description
            for s in r.stop
        },
        "inplace": sorted(r.inplace_update),
        "destructive": {d.stop_alloc_id: d.name for d in r.destructive_update},
        "updates": {g: {k: v for k, v in u.items() if v} for g, u in r.desired_tg_updates.items()},
        "deployment": deployment,
        "deployment_updates": [
            [u.deployment_id, u.status, u.description] for u in r.deployment_updates
        ],
        "reschedule_later": [
            [alloc_id, (when - T0_NS) / NS_PER_S] for alloc_id, when in r.reschedule_later
        ],
    }


def expected_of(case: dict[str, Any]) -> dict[str, Any]:
    exp = case["expect"]
    return {
        "place": sorted(exp.get("place", []), key=lambda p: (p["name"], p.get("previous", ""))),
        "stop": exp.get("stop", {}),
        "inplace": sorted(exp.get("inplace", [])),
        "destructive": exp.get("destructive", {}),
        "updates": exp.get("updates", {}),
        "deployment": exp.get("deployment"),
        "deployment_updates": exp.get("deployment_updates", []),
        "reschedule_later": exp.get("reschedule_later", []),
    }


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_reconcile_case(path: Path) -> None:
    case = json.loads(path.read_text())
    current, previous = build_jobs(case)
    allocs = [build_alloc(spec, current, previous) for spec in case.get("allocs", [])]
    deployment = build_deployment(case.get("deployment"), current)
    now = T0_NS + int(case.get("now_s", 100)) * NS_PER_S
    result = reconcile(
        current,
        allocs,
        deployment,
        now,
        eval_id=case.get("eval_id", "e1"),
        new_deployment_id="dnew",
    )
    assert summarize(result) == expected_of(case), case["description"]


def test_cases_exist() -> None:
    assert len(CASES) >= 20


def test_reschedule_tracker_of_replacement() -> None:
    current, previous = build_jobs({"job": {"type": "batch", "count": 1}})
    failed = build_alloc({"id": "a0", "client": "failed", "finished_at_s": 0}, current, previous)
    result = reconcile(current, [failed], None, T0_NS + 60 * NS_PER_S)
    (place,) = result.place
    assert place.reschedule_tracker == {
        "Events": [
            {
                "RescheduleTime": T0_NS + 60 * NS_PER_S,
                "PrevAllocID": "a0",
                "PrevNodeID": "n1",
                "Delay": 5 * NS_PER_S,
            }
        ],
        "LastReschedule": "",
    }


# --- invariants -------------------------------------------------------------------------

NAME = re.compile(r"^web\.app\[(\d+)\]$")

alloc_specs = st.lists(
    st.fixed_dictionaries(
        {
            "index": st.integers(0, 7),
            "client": st.sampled_from(
                ["pending", "running", "running", "complete", "failed", "lost"]
            ),
            "desired": st.sampled_from(["run", "run", "run", "stop"]),
            "version": st.sampled_from(["current", "previous"]),
        }
    ),
    max_size=8,
    unique_by=lambda s: s["index"],
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Any] | None, list[dict[str, Any]], int]:
    job_type = draw(st.sampled_from(["service", "batch"]))
    count = draw(st.integers(0, 5))
    canary = draw(st.integers(0, 2)) if job_type == "service" else 0
    destructive = draw(st.booleans())
    patch: dict[str, Any] = {"TaskGroups.0.Count": count}
    if canary:
        patch["TaskGroups.0.Update"] = {"Canary": canary, "MaxParallel": draw(st.integers(1, 3))}
    if destructive:
        patch["TaskGroups.0.Tasks.0.Env"] = {"V": "2"}
    case = {
        "job": {
            "type": job_type,
            "count": count,
            "patch": patch,
            "previous_patch": {},
            "stop": draw(st.booleans()),
        }
    }
    current, previous = build_jobs(case)
    specs = draw(alloc_specs)
    allocs = [build_alloc({**s, "id": f"a{i}"}, current, previous) for i, s in enumerate(specs)]
    return current, allocs, canary


def _running_after(allocs: list[dict[str, Any]], r: ReconcileResults) -> list[tuple[str, bool]]:
    stopped = {s.alloc_id for s in r.stop} | {d.stop_alloc_id for d in r.destructive_update}
    running = [
        (a["Name"], bool((a.get("DeploymentStatus") or {}).get("Canary")))
        for a in allocs
        if a["ID"] not in stopped
        and a["DesiredStatus"] == "run"
        and a["ClientStatus"] in ("pending", "running")
    ]
    running += [(p.name, p.canary) for p in r.place] + [
        (d.name, False) for d in r.destructive_update
    ]
    return running


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_invariants(scenario: tuple[dict[str, Any] | None, list[dict[str, Any]], int]) -> None:
    job, allocs, canary = scenario
    assert job is not None
    result = reconcile(job, allocs, None, T0_NS + 3600 * NS_PER_S, new_deployment_id="dnew")
    count = job["TaskGroups"][0]["Count"]
    note(f"job {job['Type']} count={count} canary={canary} stop={job['Stop']}")
    note(
        str(
            [
                (a["ID"], a["Name"], a["DesiredStatus"], a["ClientStatus"], a["Job"]["Version"])
                for a in allocs
            ]
        )
    )
    note(str(result))
    ids = {a["ID"] for a in allocs}
    stop_ids = [s.alloc_id for s in result.stop]
    assert len(stop_ids) == len(set(stop_ids)) and set(stop_ids) <= ids
    assert all(NAME.match(p.name) for p in result.place)
    if job["Stop"]:
        assert result.place == [] and result.destructive_update == []
        live = {
            a["ID"]
            for a in allocs
            if a["DesiredStatus"] == "run"
            and a["ClientStatus"] not in ("complete", "failed", "lost")
        }
        assert live <= set(stop_ids)
        return
    running = _running_after(allocs, result)
    non_canary = [name for name, is_canary in running if not is_canary]
    assert len(running) <= count + canary
    assert len(non_canary) <= count
    assert len(non_canary) == len(set(non_canary)), running
    assert sum(1 for p in result.place if p.canary) <= canary


def test_versioned_helper_orders_indexes() -> None:
    assert versioned(base_job(), 1)["JobModifyIndex"] > versioned(base_job(), 0)["JobModifyIndex"]


@st.composite
def canary_scenarios(
    draw: st.DrawFn,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], int]:
    """A destructive update with canaries already under way in the current deployment."""
    count = draw(st.integers(1, 4))
    canary = draw(st.integers(1, 2))
    patch = {
        "TaskGroups.0.Count": count,
        "TaskGroups.0.Update": {"Canary": canary, "MaxParallel": draw(st.integers(1, 3))},
        "TaskGroups.0.Tasks.0.Env": {"V": "2"},
    }
    current, previous = build_jobs({"job": {"count": count, "patch": patch, "previous_patch": {}}})
    assert current is not None
    olds = draw(st.lists(st.integers(0, count - 1), unique=True))
    allocs = [
        build_alloc({"id": f"a{i}", "index": i, "version": "previous"}, current, previous)
        for i in olds
    ]
    promoted = draw(st.booleans())
    canary_idx = draw(st.lists(st.integers(0, count + 1), unique=True, max_size=canary))
    canaries = []
    for i in canary_idx:
        spec = {"id": f"c{i}", "index": i, "deployment": "d1", "canary": not promoted}
        spec["healthy"] = draw(st.sampled_from([True, None]))
        canaries.append(build_alloc(spec, current, previous))
    state = {"DesiredCanaries": canary, "DesiredTotal": count, "Promoted": promoted}
    state["PlacedCanaries"] = [c["ID"] for c in canaries]
    deployment = build_deployment({"id": "d1", "groups": {"app": state}}, current)
    assert deployment is not None
    return current, allocs + canaries, deployment, canary


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canary_scenarios())
def test_canary_invariants(
    scenario: tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], int],
) -> None:
    job, allocs, deployment, canary = scenario
    before = copy.deepcopy((job, allocs, deployment))
    result = reconcile(job, allocs, deployment, T0_NS + 3600 * NS_PER_S, new_deployment_id="dnew")
    assert (job, allocs, deployment) == before  # pure: inputs untouched
    note(str([(a["ID"], a["Name"], a["DeploymentStatus"]) for a in allocs]))
    note(str(result))
    count = job["TaskGroups"][0]["Count"]
    state = deployment["TaskGroups"]["app"]
    placed_canary_ids = set(state["PlacedCanaries"])
    stopped = {s.alloc_id for s in result.stop} | {
        d.stop_alloc_id for d in result.destructive_update
    }
    kept_canaries = [a for a in allocs if a["ID"] in placed_canary_ids and a["ID"] not in stopped]
    assert len(kept_canaries) + sum(1 for p in result.place if p.canary) <= canary
    running = _running_after(allocs, result)
    assert len(running) <= count + canary
    if not state["Promoted"]:
        # Before promotion old allocs are neither stopped nor replaced.
        assert result.destructive_update == []
        assert all(s.alloc_id in placed_canary_ids for s in result.stop)
    # Promotion clears DeploymentStatus.Canary, so canaries are known by PlacedCanaries here.
    non_canary = [
        a["Name"]
        for a in allocs
        if a["ID"] not in stopped
        and a["ID"] not in placed_canary_ids
        and a["ClientStatus"] == "running"
    ]
    non_canary += [p.name for p in result.place if not p.canary] + [
        d.name for d in result.destructive_update
    ]
    assert len(non_canary) == len(set(non_canary))
