"""Evaluation writes: upsert with indexes, the summary's Queued counts, and cancelling a
job's superseded blocked evaluations; mirrors nomad/eval_endpoint.go (Update, Create)
and UpsertEvals in nomad/state/state_store.go.

Every write that creates or updates an eval goes through `upsert_eval` inside its
transaction; the eval broker picks pending evals up from the committed change.
"""

from __future__ import annotations

import time
from typing import Any

from nomadpaas.agent.server.job_summary import refresh_job, set_queued
from nomadpaas.agent.server.state import lookups
from nomadpaas.agent.server.state.frozen import thaw
from nomadpaas.agent.server.state.schema import EVALS
from nomadpaas.agent.server.state.state_store import Row, StateStore, Txn
from nomadpaas.agent.structs.evaluation import (
    EVAL_STATUS_BLOCKED,
    EVAL_STATUS_CANCELED,
    EVAL_STATUS_COMPLETE,
)

MSG_EVAL_UPDATE = "EvalUpdateRequestType"
CANCELED_BY_NEWER = "evaluation superseded by a newer one for the job"


def upsert_eval(txn: Txn, evaluation: dict[str, Any], *, refresh: bool = True) -> Row:
    """Insert or update one evaluation at this transaction's index."""
    e = thaw(evaluation)
    old = txn.get(EVALS, (e["ID"],))
    e["CreateIndex"] = old["CreateIndex"] if old is not None else txn.index
    e["ModifyIndex"] = txn.index
    now = time.time_ns()
    if old is None and not e.get("CreateTime"):
        e["CreateTime"] = now
    e["ModifyTime"] = now
    row = txn.put(EVALS, (e["ID"],), e)
    if e["Status"] == EVAL_STATUS_COMPLETE and e.get("QueuedAllocations"):
        set_queued(txn, e["Namespace"], e["JobID"], e["QueuedAllocations"])
    if refresh:
        refresh_job(txn, e["Namespace"], e["JobID"])
    return row


def cancel_blocked(txn: Txn, namespace: str, job_id: str, keep: str) -> None:
    """A newer evaluation of the job has run: its older blocked evals are moot."""
    for e in lookups.evals_by_job(txn, namespace, job_id):
        if e["Status"] == EVAL_STATUS_BLOCKED and e["ID"] != keep:
            canceled = thaw(e)
            canceled["Status"] = EVAL_STATUS_CANCELED
            canceled["StatusDescription"] = CANCELED_BY_NEWER
            upsert_eval(txn, canceled, refresh=False)


def update_eval(store: StateStore, evaluation: dict[str, Any]) -> int:
    """The worker's eval write-back (complete / failed); returns the index."""

    def txn_fn(txn: Txn) -> None:
        if evaluation["Status"] == EVAL_STATUS_COMPLETE:
            cancel_blocked(
                txn, evaluation["Namespace"], evaluation["JobID"], evaluation.get("BlockedEval", "")
            )
        upsert_eval(txn, evaluation)

    return store.write(MSG_EVAL_UPDATE, txn_fn)[1]


def create_eval(store: StateStore, evaluation: dict[str, Any]) -> int:
    """A scheduler-created eval (follow-up, blocked); returns the index."""
    return store.write(MSG_EVAL_UPDATE, lambda txn: upsert_eval(txn, evaluation))[1]
