"""The worker thread and the server's wiring: pending evals are restored at start,
unknown eval types fail, a scheduler that keeps raising is nacked until the delivery
limit and then marked failed."""

from __future__ import annotations

import time
from typing import Any
from unittest import mock

from agent.server.sched_harness import Harness, service_job

from nomadpaas.agent.scheduler import scheduler as sched_mod
from nomadpaas.agent.server.eval_broker import EvalBroker
from nomadpaas.agent.server.eval_endpoint import create_eval
from nomadpaas.agent.server.server import Server
from nomadpaas.agent.server.state.schema import EVALS
from nomadpaas.agent.server.worker import Worker
from nomadpaas.agent.structs.evaluation import new_evaluation


def wait_status(h: Harness, eval_id: str, status: str, timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = h.store.snapshot().get(EVALS, (eval_id,))
        if row is not None and row["Status"] == status:
            return row
        time.sleep(0.02)
    raise AssertionError(f"eval {eval_id} never became {status}")


def test_pending_evals_are_restored_when_the_server_starts(h: Harness) -> None:
    h.server.stop()
    job = {"ID": "web", "Namespace": "default", "Type": "service", "Priority": 50}
    evaluation = new_evaluation(
        eval_id="e-restored", job=job, triggered_by="job-register", now_ns=1
    )
    create_eval(h.store, evaluation)
    server = Server(h.store, num_workers=0)
    server.start()
    try:
        item = server.broker.dequeue(0)
        assert item is not None and item[0]["ID"] == "e-restored"
    finally:
        server.stop()


def test_running_worker_schedules_and_fails_unknown_types(h: Harness) -> None:
    worker = Worker(h.store, h.server.broker, "t")
    worker.start()
    try:
        out = h.jobs.register(service_job(count=1))
        wait_status(h, out["EvalID"], "complete")
        job = {"ID": "sys", "Namespace": "default", "Type": "system", "Priority": 50}
        evaluation = new_evaluation(eval_id="e-sys", job=job, triggered_by="job-register", now_ns=1)
        create_eval(h.store, evaluation)
        failed = wait_status(h, "e-sys", "failed")
        assert failed["StatusDescription"] == "unknown scheduler 'system'"
    finally:
        worker.stop()


class Boom:
    def __init__(self, *args: Any) -> None:
        pass

    def process(self, evaluation: Any) -> None:
        raise RuntimeError("scheduler bug")


def test_a_raising_scheduler_is_retried_then_the_eval_fails(h: Harness) -> None:
    broker = EvalBroker(nack_delays_s=(0.01, 0.01))
    broker.set_enabled(True)
    worker = Worker(h.store, broker, "t")
    with mock.patch.dict(sched_mod.BUILTIN_SCHEDULERS, {"service": Boom}):
        worker.start()
        try:
            job = {"ID": "web", "Namespace": "default", "Type": "service", "Priority": 50}
            evaluation = new_evaluation(eval_id="e1", job=job, triggered_by="x", now_ns=1)
            create_eval(h.store, evaluation)
            broker.enqueue(h.store.snapshot().get(EVALS, ("e1",)))
            failed = wait_status(h, "e1", "failed")
            assert failed["StatusDescription"] == "evaluation reached delivery limit (3)"
        finally:
            worker.stop()
