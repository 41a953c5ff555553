"""Rows and a call-counting DeploymentTriggers fake for the deployment watcher unit tests
(Nomad's deploymentwatcher tests use the same pattern: a mock backend)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nomadpaas.agent.server.deploymentwatcher.decisions import StatusUpdate
from nomadpaas.agent.server.deploymentwatcher.deployment_watcher import WriteResult
from nomadpaas.agent.server.state.schema import ALLOCS, DEPLOYMENTS, EVALS, JOB_VERSIONS, JOBS
from nomadpaas.agent.server.state.state_store import StateStore, Txn
from nomadpaas.agent.structs.alloc import ZERO_TIME

S = 1_000_000_000
DEP_ID = "d0000000-0000-0000-0000-000000000001"


def job(version: int, release: str, *, stable: bool = False, **update: Any) -> dict[str, Any]:
    return {
        "ID": "web",
        "Namespace": "default",
        "Type": "service",
        "Version": version,
        "Stable": stable,
        "Status": "running",
        "CreateIndex": 1,
        "ModifyIndex": version + 1,
        "JobModifyIndex": version + 1,
        "Priority": 50,
        "TaskGroups": [
            {
                "Name": "app",
                "Count": 2,
                "Update": {"MaxParallel": 1, **update},
                "ReschedulePolicy": {"Attempts": 0, "Unlimited": False},
                "Tasks": [{"Name": "srv", "Driver": "raw_exec", "Env": {"R": release}}],
            }
        ],
    }


def group_state(**over: Any) -> dict[str, Any]:
    state = {
        "AutoRevert": False,
        "AutoPromote": False,
        "ProgressDeadline": 0,
        "RequireProgressBy": ZERO_TIME,
        "Promoted": False,
        "PlacedCanaries": None,
        "DesiredCanaries": 0,
        "DesiredTotal": 2,
        "PlacedAllocs": 2,
        "HealthyAllocs": 0,
        "UnhealthyAllocs": 0,
    }
    state.update(over)
    return state


def deployment(status: str = "running", version: int = 1, **state: Any) -> dict[str, Any]:
    return {
        "ID": DEP_ID,
        "Namespace": "default",
        "JobID": "web",
        "JobVersion": version,
        "JobCreateIndex": 1,
        "TaskGroups": {"app": group_state(**state)},
        "Status": status,
        "StatusDescription": "Deployment is running",
        "EvalPriority": 50,
        "CreateIndex": 5,
        "ModifyIndex": 5,
    }


def alloc(
    alloc_id: str,
    healthy: bool | None = None,
    *,
    canary: bool = False,
    index: int = 6,
    client_status: str = "running",
    desired: str = "run",
) -> dict[str, Any]:
    return {
        "ID": alloc_id,
        "Namespace": "default",
        "JobID": "web",
        "TaskGroup": "app",
        "DeploymentID": DEP_ID,
        "DesiredStatus": desired,
        "ClientStatus": client_status,
        "DeploymentStatus": {"Healthy": healthy, "Canary": canary, "ModifyIndex": index},
        "ModifyIndex": index,
        "Job": None,
    }


def load(
    store: StateStore,
    jobs: Sequence[dict[str, Any]],
    dep: dict[str, Any],
    allocs: Sequence[dict[str, Any]],
    evals: Sequence[dict[str, Any]] = (),
) -> None:
    def fn(txn: Txn) -> None:
        for j in jobs:
            txn.put(JOB_VERSIONS, ("default", "web", f"{int(j['Version']):020d}"), j)
        txn.put(JOBS, ("default", "web"), jobs[-1])
        txn.put(DEPLOYMENTS, (dep["ID"],), dep)
        for a in allocs:
            txn.put(ALLOCS, (a["ID"],), a)
        for e in evals:
            txn.put(EVALS, (e["ID"],), e)

    store.write("Test", fn)


@dataclass
class FakeTriggers:
    """Records every call; `event` fires on each so tests wait instead of sleeping."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    event: threading.Event = field(default_factory=threading.Event)

    def _record(self, name: str, args: Any) -> WriteResult:
        self.calls.append((name, args))
        self.event.set()
        return WriteResult(index=100, eval_id="e1", eval_create_index=100)

    def update_deployment_status(
        self,
        update: StatusUpdate,
        *,
        terminal_error: str,
        create_eval: bool = True,
        reset_progress: bool = False,
    ) -> WriteResult:
        return self._record("status", (update, terminal_error, create_eval, reset_progress))

    def promote(self, deployment_id: str, all_groups: bool, groups: Sequence[str]) -> WriteResult:
        return self._record("promote", (deployment_id, all_groups, tuple(groups)))

    def set_alloc_health(
        self,
        deployment_id: str,
        healthy: Sequence[str],
        unhealthy: Sequence[str],
        failure: StatusUpdate | None,
    ) -> WriteResult:
        return self._record("health", (tuple(healthy), tuple(unhealthy), failure))

    def mark_for_reschedule(self, deployment_id: str, alloc_ids: Sequence[str]) -> int:
        self._record("reschedule", tuple(alloc_ids))
        return 100


@dataclass
class FakeEvals:
    added: list[dict[str, Any]] = field(default_factory=list)
    event: threading.Event = field(default_factory=threading.Event)

    def add(self, evaluation: dict[str, Any]) -> None:
        self.added.append(evaluation)
        self.event.set()
