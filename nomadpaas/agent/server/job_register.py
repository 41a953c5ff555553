"""The transaction-level steps every job write shares: upsert a job version (new version
only when the spec changed), retain versions, create the job's summary and namespace,
and create its evaluation; mirrors upsertJobImpl/upsertJobVersion in
nomad/state/state_store.go and the eval creation of nomad/job_endpoint.go Register.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from nomadpaas.agent.server.eval_endpoint import upsert_eval
from nomadpaas.agent.server.job_summary import empty_summary, is_parent, refresh_job
from nomadpaas.agent.server.state.frozen import thaw
from nomadpaas.agent.server.state.schema import (
    JOB_SUMMARIES,
    JOB_VERSIONS,
    JOBS,
    NAMESPACES,
    version_key,
)
from nomadpaas.agent.server.state.state_store import Row, Txn
from nomadpaas.agent.structs.evaluation import TRIGGER_JOB_REGISTER, new_evaluation
from nomadpaas.agent.structs.job import (
    JOB_STATUS_PENDING,
    SERVER_ONLY_FIELDS,
    job_spec_changed,
    server_fields,
)

MSG_JOB_REGISTER = "JobRegisterRequestType"
MSG_JOB_DEREGISTER = "JobDeregisterRequestType"
JOB_TRACKED_VERSIONS = 6  # server config job_tracked_versions default
# Server-owned fields the server itself may carry over (dispatch children, stop).
TRUSTED_FIELDS = ("Stop", "ParentID", "Dispatched", "DispatchIdempotencyToken")


@dataclass
class Upserted:
    job: Row  # the stored job after the write
    changed: bool  # a new version was written
    eval: Row | None = None


def user_fields(job: dict[str, Any]) -> dict[str, Any]:
    """`job` without the server-only fields a client may have echoed back (Stop kept)."""
    return {k: v for k, v in job.items() if k not in SERVER_ONLY_FIELDS or k == "Stop"}


def ensure_namespace(txn: Txn, namespace: str) -> None:
    """Jobs may name a namespace nobody created; it becomes visible in /v1/namespaces."""
    if txn.get(NAMESPACES, (namespace,)) is not None:
        return
    txn.put(
        NAMESPACES,
        (namespace,),
        {
            "Name": namespace,
            "Description": "",
            "Quota": "",
            "Capabilities": None,
            "NodePoolConfiguration": None,
            "VaultConfiguration": None,
            "ConsulConfiguration": None,
            "Meta": None,
            "CreateIndex": txn.index,
            "ModifyIndex": txn.index,
        },
    )


def upsert_job(txn: Txn, job: dict[str, Any], *, trusted: bool = False) -> Upserted:
    """Store `job` as a new version when its spec changed; returns what is stored.

    `trusted` keeps the server-owned fields in TRUSTED_FIELDS (dispatch, stop, revert);
    otherwise only `Stop` is taken from `job`.
    """
    ns, job_id = job["Namespace"], job["ID"]
    existing = txn.get(JOBS, (ns, job_id))
    spec = user_fields(job)
    if trusted:
        spec.update({k: job[k] for k in TRUSTED_FIELDS if k in job})
    if existing is not None:
        for key in ("ParentID", "Dispatched", "DispatchIdempotencyToken"):
            spec.setdefault(key, existing.get(key))
        if not job_spec_changed(existing, spec):
            return Upserted(existing, False)
    now = time.time_ns()
    version = int(existing["Version"]) + 1 if existing is not None else 0
    stored = server_fields(spec, now_ns=now, index=txn.index, version=version)
    stored["CreateIndex"] = existing["CreateIndex"] if existing is not None else txn.index
    stored["Status"] = existing["Status"] if existing is not None else JOB_STATUS_PENDING
    stored["Stable"] = False
    stored["VersionTag"] = None
    row = txn.put(JOBS, (ns, job_id), stored)
    txn.put(JOB_VERSIONS, version_key(ns, job_id, version), stored)
    prune_versions(txn, ns, job_id)
    ensure_namespace(txn, ns)
    if txn.get(JOB_SUMMARIES, (ns, job_id)) is None:
        txn.put(JOB_SUMMARIES, (ns, job_id), empty_summary(stored, txn.index))
    refresh_job(txn, ns, job_id)
    if stored.get("ParentID"):
        refresh_job(txn, ns, stored["ParentID"])
    return Upserted(txn.get(JOBS, (ns, job_id)) or row, True)


def prune_versions(txn: Txn, namespace: str, job_id: str) -> None:
    """Keep JOB_TRACKED_VERSIONS versions: drop the oldest, never the newest Stable one,
    a tagged one, or the current one."""
    versions = txn.list(JOB_VERSIONS, (namespace, job_id))  # oldest first
    excess = len(versions) - JOB_TRACKED_VERSIONS
    if excess <= 0:
        return
    stable = [v for v in versions if v.get("Stable")]
    keep_stable = stable[-1]["Version"] if stable else None
    for v in versions[:-1]:
        if excess <= 0:
            break
        if v["Version"] == keep_stable or v.get("VersionTag"):
            continue
        txn.delete(JOB_VERSIONS, version_key(namespace, job_id, int(v["Version"])))
        excess -= 1


def create_job_eval(
    txn: Txn,
    job: Row,
    *,
    triggered_by: str = TRIGGER_JOB_REGISTER,
    priority: int | None = None,
    eval_type: str | None = None,
) -> Row | None:
    """The evaluation a job write creates; none for periodic/parameterized parents."""
    if is_parent(job):
        return None
    evaluation = new_evaluation(
        eval_id=str(uuid.uuid4()),
        job=thaw(job),
        triggered_by=triggered_by,
        now_ns=time.time_ns(),
        priority=priority,
        eval_type=eval_type,
    )
    return upsert_eval(txn, evaluation)


def register_response(upserted: Upserted, index: int) -> dict[str, Any]:
    """JobRegisterResponse (WriteMeta/QueryMeta fields are added by the HTTP layer)."""
    job = upserted.job
    return {
        "EvalID": upserted.eval["ID"] if upserted.eval is not None else "",
        "EvalCreateIndex": upserted.eval["CreateIndex"] if upserted.eval is not None else 0,
        "JobModifyIndex": job["JobModifyIndex"] if upserted.changed else job["ModifyIndex"],
        "Warnings": "",
        "Index": index,
    }
