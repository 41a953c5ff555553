"""A scheduling worker: dequeues evaluations from the broker, runs the scheduler for
the eval's type over a state snapshot, and is the scheduler's Planner; mirrors
nomad/worker.go.

The worker acks an eval once the scheduler has written it back, and nacks it when the
scheduler raised (the broker redelivers it, then gives up: the worker marks it
`failed`). Plans are applied synchronously through plan apply (one writer, so there is
no plan queue to wait on).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from nomadpaas.agent.scheduler.scheduler import Plan, PlanResult, State, new_scheduler
from nomadpaas.agent.server import eval_endpoint
from nomadpaas.agent.server.eval_broker import EvalBroker
from nomadpaas.agent.server.plan_apply import apply_plan
from nomadpaas.agent.server.state import lookups
from nomadpaas.agent.server.state.frozen import thaw
from nomadpaas.agent.server.state.schema import EVALS, JOBS, NODES
from nomadpaas.agent.server.state.state_store import Row, Snapshot, StateStore
from nomadpaas.agent.structs.evaluation import EVAL_STATUS_FAILED, eval_terminal

log = logging.getLogger(__name__)

DEQUEUE_TIMEOUT_S = 0.5  # how often an idle worker checks whether it should stop
STATE_WAIT_S = 5.0  # how long to wait for the snapshot to reach the eval's index


class SnapshotState:
    """The scheduler's `State` over one state-store snapshot."""

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap

    @property
    def index(self) -> int:
        return self._snap.index

    def job_by_id(self, namespace: str, job_id: str) -> Row | None:
        return self._snap.get(JOBS, (namespace, job_id))

    def allocs_by_job(self, namespace: str, job_id: str) -> list[Row]:
        return lookups.allocs_by_job(self._snap, namespace, job_id)

    def latest_deployment(self, namespace: str, job_id: str) -> Row | None:
        return lookups.latest_deployment(self._snap, namespace, job_id)

    def ready_nodes(self) -> list[Row]:
        return [
            n
            for n in self._snap.list(NODES)
            if n.get("Status") == "ready" and n.get("SchedulingEligibility") == "eligible"
        ]

    def allocs_by_node(self, node_id: str) -> list[Row]:
        return lookups.allocs_by_node(self._snap, node_id)


class Worker:
    """One scheduling thread; `start()`/`stop()`."""

    def __init__(self, store: StateStore, broker: EvalBroker, name: str = "worker-0") -> None:
        self._store = store
        self._broker = broker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"nomadpaas-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._broker.dequeue(DEQUEUE_TIMEOUT_S)
            if item is None:
                continue
            evaluation, token = item
            try:
                self.process(evaluation)
            except Exception:
                log.exception("evaluation %s failed", evaluation["ID"])
                if self._store.closed:
                    return
                try:
                    if not self._broker.nack(evaluation["ID"], token):
                        self._fail(evaluation, "evaluation reached delivery limit (3)")
                except (KeyError, ValueError):
                    pass
                continue
            try:
                self._broker.ack(evaluation["ID"], token)
            except (KeyError, ValueError):  # the broker was flushed meanwhile
                pass

    def process(self, evaluation: Row) -> None:
        """Run the scheduler for one evaluation (public for tests)."""

        def at_eval(snap: Snapshot) -> tuple[Snapshot, int]:
            return snap, snap.index

        snap = self._store.snapshot()
        if snap.index < int(evaluation.get("ModifyIndex") or 0):
            snap, _ = self._store.blocking_query(at_eval, snap.index, STATE_WAIT_S)
        current = snap.get(EVALS, (evaluation["ID"],))
        if current is not None and eval_terminal(current):
            return  # already done (e.g. cancelled) while it sat in the queue
        try:
            scheduler = new_scheduler(evaluation["Type"], SnapshotState(snap), self)
        except KeyError as exc:
            self._fail(evaluation, str(exc.args[0]))
            return
        scheduler.process(evaluation)

    def _fail(self, evaluation: Row, description: str) -> None:
        failed = thaw(evaluation)
        failed["Status"] = EVAL_STATUS_FAILED
        failed["StatusDescription"] = description
        eval_endpoint.update_eval(self._store, failed)

    # -- Planner -------------------------------------------------------------------------

    def submit_plan(self, plan: Plan) -> tuple[PlanResult, State | None]:
        result = apply_plan(self._store, plan)
        if result.rejected:
            return result, SnapshotState(self._store.snapshot())
        return result, None

    def update_eval(self, evaluation: dict[str, Any]) -> None:
        eval_endpoint.update_eval(self._store, evaluation)

    def create_eval(self, evaluation: dict[str, Any]) -> None:
        eval_endpoint.create_eval(self._store, evaluation)
