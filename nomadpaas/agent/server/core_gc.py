"""Garbage collection of terminal evaluations, allocations, deployments and dead jobs;
mirrors nomad/core_sched.go (evalGC, deploymentGC, jobGC) with the server's default
thresholds. `collect(force=True)` is `PUT /v1/system/gc`: thresholds become zero.

Evals go once terminal and older than the threshold, with their allocations if those
are all terminal too. A job goes when it is dead and stopped (or a dead batch job) and
nothing of it is left but collectable evals. Terminal deployments go after an hour,
except a job's latest one. Each kind is deleted in one write of its own message type.
"""

from __future__ import annotations

import logging
import threading
import time

from nomadpaas.agent.server.state import lookups
from nomadpaas.agent.server.state.schema import (
    ALLOCS,
    DEPLOYMENTS,
    EVALS,
    JOB_SUMMARIES,
    JOB_VERSIONS,
    JOBS,
    SCALING_EVENTS,
    version_key,
)
from nomadpaas.agent.server.state.state_store import Row, StateStore, Txn
from nomadpaas.agent.structs.alloc import alloc_terminal, client_terminal
from nomadpaas.agent.structs.deployment import deployment_active
from nomadpaas.agent.structs.duration import NS_PER_HOUR, NS_PER_MIN
from nomadpaas.agent.structs.evaluation import eval_terminal
from nomadpaas.agent.structs.job import JOB_STATUS_DEAD, JOB_TYPE_BATCH

log = logging.getLogger(__name__)

EVAL_GC_THRESHOLD_NS = 1 * NS_PER_HOUR  # eval_gc_threshold
BATCH_EVAL_GC_THRESHOLD_NS = 24 * NS_PER_HOUR  # batch_eval_gc_threshold
DEPLOYMENT_GC_THRESHOLD_NS = 1 * NS_PER_HOUR  # deployment_gc_threshold
JOB_GC_THRESHOLD_NS = 4 * NS_PER_HOUR  # job_gc_threshold
GC_INTERVAL_S = 5 * NS_PER_MIN / 1e9  # how often the background collector runs
MSG_EVAL_REAP = "EvalReapRequestType"
MSG_JOB_BATCH_DEREGISTER = "JobBatchDeregisterRequestType"
MSG_DEPLOYMENT_DELETE = "DeploymentDeleteRequestType"


def _old(row: Row, threshold_ns: int, now: int) -> bool:
    return now - int(row.get("ModifyTime") or 0) >= threshold_ns


def _eval_collectable(txn: Txn, evaluation: Row, force: bool, now: int) -> bool:
    if not eval_terminal(evaluation):
        return False
    threshold = (
        BATCH_EVAL_GC_THRESHOLD_NS
        if evaluation["Type"] == JOB_TYPE_BATCH
        else (EVAL_GC_THRESHOLD_NS)
    )
    if not force and not _old(evaluation, threshold, now):
        return False
    allocs = lookups.allocs_by_eval(txn, evaluation["ID"])
    return all(alloc_terminal(a) and client_terminal(a) for a in allocs)


def _gc_jobs(txn: Txn, force: bool, now: int) -> int:
    deleted = 0
    for job in txn.list(JOBS):
        ns, job_id = job["Namespace"], job["ID"]
        dead = job.get("Status") == JOB_STATUS_DEAD
        if not dead or not (job.get("Stop") or job["Type"] == JOB_TYPE_BATCH):
            continue
        if not force and now - int(job.get("SubmitTime") or 0) < JOB_GC_THRESHOLD_NS:
            continue
        evals = lookups.evals_by_job(txn, ns, job_id)
        if not all(_eval_collectable(txn, e, force, now) for e in evals):
            continue
        if any(not client_terminal(a) for a in lookups.allocs_by_job(txn, ns, job_id)):
            continue
        for e in evals:
            _delete_eval(txn, e)
        txn.delete(JOBS, (ns, job_id))
        txn.delete(JOB_SUMMARIES, (ns, job_id))
        txn.delete(SCALING_EVENTS, (ns, job_id))
        for v in txn.list(JOB_VERSIONS, (ns, job_id)):
            txn.delete(JOB_VERSIONS, version_key(ns, job_id, int(v["Version"])))
        deleted += 1
    return deleted


def _delete_eval(txn: Txn, evaluation: Row) -> None:
    for alloc in lookups.allocs_by_eval(txn, evaluation["ID"]):
        txn.delete(ALLOCS, (alloc["ID"],))
    txn.delete(EVALS, (evaluation["ID"],))


def _gc_evals(txn: Txn, force: bool, now: int) -> int:
    deleted = 0
    for evaluation in txn.list(EVALS):
        # A job's evals go with the job (jobGC); here only those of jobs that are gone
        # or still running, so a live job keeps its history for an hour.
        if _eval_collectable(txn, evaluation, force, now):
            _delete_eval(txn, evaluation)
            deleted += 1
    return deleted


def _gc_deployments(txn: Txn, force: bool, now: int) -> int:
    deleted = 0
    for d in txn.list(DEPLOYMENTS):
        if deployment_active(d) or (not force and not _old(d, DEPLOYMENT_GC_THRESHOLD_NS, now)):
            continue
        latest = lookups.latest_deployment(txn, d["Namespace"], d["JobID"])
        if (
            latest is not None
            and latest["ID"] == d["ID"]
            and txn.get(JOBS, (d["Namespace"], d["JobID"]))
        ):
            continue
        txn.delete(DEPLOYMENTS, (d["ID"],))
        deleted += 1
    return deleted


def collect(store: StateStore, *, force: bool = False) -> dict[str, int]:
    """One GC pass; returns how many jobs, evals and deployments were deleted."""
    now = time.time_ns()
    jobs, _ = store.write(MSG_JOB_BATCH_DEREGISTER, lambda t: _gc_jobs(t, force, now))
    evals, _ = store.write(MSG_EVAL_REAP, lambda t: _gc_evals(t, force, now))
    deployments, _ = store.write(MSG_DEPLOYMENT_DELETE, lambda t: _gc_deployments(t, force, now))
    return {"Jobs": jobs, "Evals": evals, "Deployments": deployments}


class CoreGC:
    """Runs `collect` every GC_INTERVAL_S on a thread; `start()`/`stop()`."""

    def __init__(self, store: StateStore, interval_s: float = GC_INTERVAL_S) -> None:
        self._store = store
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nomadpaas-core-gc", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                counts = collect(self._store)
            except Exception:
                if self._store.closed:
                    return
                log.exception("garbage collection failed")
                continue
            if any(counts.values()):
                log.info("garbage collected %s", counts)
