"""The Job "RPC": register, deregister (stop/purge), revert, stable, evaluate, version
tags; mirrors nomad/job_endpoint.go (+ job_endpoint_hooks.go's validate hook).

Each call is one state-store write: the job version, its summary and its evaluation
commit together, so the broker sees the eval only once the job it schedules exists.
Methods block on fsync: the HTTP layer calls them from a thread. Errors are `RPCError`
(500 unless coded), with Nomad's texts.
"""

from __future__ import annotations

import time
from typing import Any

from nomadpaas.agent.server.errors import RPCError
from nomadpaas.agent.server.eval_endpoint import MSG_EVAL_UPDATE
from nomadpaas.agent.server.job_register import (
    MSG_JOB_DEREGISTER,
    MSG_JOB_REGISTER,
    Upserted,
    create_job_eval,
    register_response,
    upsert_job,
)
from nomadpaas.agent.server.job_summary import is_parameterized, is_periodic, refresh_job
from nomadpaas.agent.server.plan_apply import mark_stable
from nomadpaas.agent.server.state import lookups
from nomadpaas.agent.server.state.frozen import thaw
from nomadpaas.agent.server.state.schema import (
    ALLOCS,
    JOB_SUMMARIES,
    JOB_VERSIONS,
    JOBS,
    SCALING_EVENTS,
    version_key,
)
from nomadpaas.agent.server.state.state_store import Row, StateStore, Txn
from nomadpaas.agent.structs.alloc import alloc_terminal
from nomadpaas.agent.structs.evaluation import (
    TRIGGER_JOB_DEREGISTER,
    TRIGGER_JOB_REGISTER,
)
from nomadpaas.agent.structs.job import JOB_TYPE_SERVICE
from nomadpaas.agent.structs.job_validate import multierror_text, validate

MSG_JOB_STABILITY = "JobStabilityRequestType"
MSG_JOB_VERSION_TAG = "JobVersionTagRequestType"
MSG_ALLOC_DESIRED_TRANSITION = "AllocUpdateDesiredTransitionRequestType"


def check_transition(existing: Row | None, job: dict[str, Any]) -> None:
    """The forbidden changes of an existing job (job_endpoint.go Register)."""
    if job.get("Dispatched") and (existing is None or not existing.get("Dispatched")):
        raise RPCError("field 'Dispatched' is read-only")
    if existing is None:
        return
    if existing.get("Type") != job.get("Type"):
        raise RPCError(f'cannot update job from type "{existing["Type"]}" to "{job["Type"]}"')
    was, now = is_parameterized(existing), is_parameterized(job)
    if was != now:
        raise RPCError(
            "cannot update parameterized job to being non-parameterized"
            if was
            else "cannot update non-parameterized job to being parameterized"
        )
    was, now = is_periodic(existing), is_periodic(job)
    if was != now:
        raise RPCError(
            "cannot update periodic job to being non-periodic"
            if was
            else "cannot update non-periodic job to being periodic"
        )


def enforce_index(existing: Row | None, job_modify_index: int) -> None:
    prefix = f"Enforcing job modify index {job_modify_index}"
    if job_modify_index == 0:
        if existing is not None:
            raise RPCError(f"{prefix}: job already exists")
        return
    if existing is None:
        raise RPCError(f"{prefix}: job does not exist")
    if int(existing["JobModifyIndex"]) != job_modify_index:
        raise RPCError(
            f"{prefix}: job exists with conflicting job modify index: {existing['JobModifyIndex']}"
        )


def validate_or_raise(job: dict[str, Any]) -> None:
    errs = validate(job)
    if errs:
        raise RPCError(multierror_text(errs))


class Jobs:
    """The Job RPC over one state store."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    # -- register ------------------------------------------------------------------------

    def register(
        self,
        job: dict[str, Any],
        *,
        enforce: bool = False,
        job_modify_index: int = 0,
        eval_priority: int | None = None,
        preserve_counts: bool = False,
    ) -> dict[str, Any]:
        """Job.Register: `job` is already canonicalized (api.Job.Canonicalize)."""
        validate_or_raise(job)
        if eval_priority is not None and not 1 <= eval_priority <= 100:
            raise RPCError("eval priority must be between [1, 100]")

        def txn_fn(txn: Txn) -> Upserted:
            existing = txn.get(JOBS, (job["Namespace"], job["ID"]))
            check_transition(existing, job)
            if enforce:
                enforce_index(existing, job_modify_index)
            spec = dict(job)
            if preserve_counts and existing is not None:
                counts = {g["Name"]: g["Count"] for g in existing.get("TaskGroups") or []}
                spec["TaskGroups"] = [
                    {**g, "Count": counts.get(g["Name"], g["Count"])}
                    for g in job.get("TaskGroups") or []
                ]
            upserted = upsert_job(txn, spec)
            upserted.eval = create_job_eval(txn, upserted.job, priority=eval_priority)
            return upserted

        upserted, index = self._store.write(MSG_JOB_REGISTER, txn_fn)
        return register_response(upserted, index)

    # -- deregister ----------------------------------------------------------------------

    def deregister(
        self,
        namespace: str,
        job_id: str,
        *,
        purge: bool = False,
        eval_priority: int | None = None,
        no_shutdown_delay: bool = False,
    ) -> dict[str, Any]:
        """Job.Deregister: stop (a new version with Stop) or purge; 200 even when unknown.
        `no_shutdown_delay` marks the live allocs so the client skips shutdown delays."""

        def txn_fn(txn: Txn) -> tuple[Row | None, int]:
            existing = txn.get(JOBS, (namespace, job_id))
            if existing is None:
                return None, 0
            if no_shutdown_delay:
                _set_transition(txn, namespace, job_id, "NoShutdownDelay")
            if purge:
                txn.delete(JOBS, (namespace, job_id))
                txn.delete(JOB_SUMMARIES, (namespace, job_id))
                txn.delete(SCALING_EVENTS, (namespace, job_id))
                for v in txn.list(JOB_VERSIONS, (namespace, job_id)):
                    txn.delete(JOB_VERSIONS, version_key(namespace, job_id, int(v["Version"])))
                if existing.get("ParentID"):
                    refresh_job(txn, namespace, existing["ParentID"])
                job, jmi = existing, txn.index
            else:
                upserted = upsert_job(txn, {**thaw(existing), "Stop": True}, trusted=True)
                job = upserted.job
                jmi = job["JobModifyIndex"] if upserted.changed else job["ModifyIndex"]
            evaluation = create_job_eval(
                txn,
                job,
                triggered_by=TRIGGER_JOB_DEREGISTER,
                priority=eval_priority,
                eval_type=JOB_TYPE_SERVICE,
            )
            return evaluation, jmi

        (evaluation, jmi), index = self._store.write(MSG_JOB_DEREGISTER, txn_fn)
        return {
            "EvalID": evaluation["ID"] if evaluation is not None else "",
            "EvalCreateIndex": evaluation["CreateIndex"] if evaluation is not None else 0,
            "JobModifyIndex": jmi,
            "VolumeEvalID": "",
            "VolumeEvalIndex": 0,
            "Index": index,
        }

    # -- revert / stable -----------------------------------------------------------------

    def revert(
        self, namespace: str, job_id: str, version: int, enforce_prior_version: int | None
    ) -> dict[str, Any]:
        """Job.Revert: register a copy of `version` as the newest version."""

        def txn_fn(txn: Txn) -> Upserted:
            current = txn.get(JOBS, (namespace, job_id))
            if current is None:
                raise RPCError(f'job "{job_id}" not found')
            if enforce_prior_version is not None and current["Version"] != enforce_prior_version:
                raise RPCError(
                    f"Current job has version {current['Version']}; "
                    f"enforcing version {enforce_prior_version}"
                )
            if current["Version"] == version:
                raise RPCError("can't revert to current version")
            old = txn.get(JOB_VERSIONS, version_key(namespace, job_id, version))
            if old is None:
                raise RPCError(
                    f'job "{job_id}" in namespace "{namespace}" at version {version} not found'
                )
            upserted = copy_version_as_new(txn, namespace, job_id, version)
            upserted.eval = create_job_eval(txn, upserted.job)
            return upserted

        upserted, index = self._store.write(MSG_JOB_REGISTER, txn_fn)
        return register_response(upserted, index)

    def stable(self, namespace: str, job_id: str, version: int, stable: bool) -> int:
        """Job.Stable: set a version's Stable flag; returns the index."""

        def txn_fn(txn: Txn) -> None:
            if not mark_stable(txn, namespace, job_id, version, stable):
                raise RPCError(
                    f'job "{job_id}" in namespace "{namespace}" at version {version} not found'
                )

        return self._store.write(MSG_JOB_STABILITY, txn_fn)[1]

    # -- evaluate ------------------------------------------------------------------------

    def evaluate(self, namespace: str, job_id: str, force_reschedule: bool) -> dict[str, Any]:
        """Job.Evaluate: a fresh `job-register` eval; optionally force failed allocs out."""

        def txn_fn(txn: Txn) -> tuple[Row, Row]:
            job = txn.get(JOBS, (namespace, job_id))
            if job is None:
                raise RPCError("job not found")
            if is_periodic(job):
                raise RPCError("can't evaluate periodic job")
            if is_parameterized(job):
                raise RPCError("can't evaluate parameterized job")
            if force_reschedule:
                _set_transition(txn, namespace, job_id, "ForceReschedule", failed_only=True)
            evaluation = create_job_eval(txn, job, triggered_by=TRIGGER_JOB_REGISTER)
            assert evaluation is not None
            return job, evaluation

        msg = MSG_ALLOC_DESIRED_TRANSITION if force_reschedule else MSG_EVAL_UPDATE
        (job, evaluation), index = self._store.write(msg, txn_fn)
        return {
            "EvalID": evaluation["ID"],
            "EvalCreateIndex": evaluation["CreateIndex"],
            "JobModifyIndex": job["JobModifyIndex"],
            "Index": index,
        }

    # -- version tags --------------------------------------------------------------------

    def tag_version(
        self, namespace: str, job_id: str, name: str, version: int | None, description: str
    ) -> tuple[dict[str, Any], int]:
        """Job.TagVersion: name a version (a tagged version is never pruned)."""

        def txn_fn(txn: Txn) -> dict[str, Any]:
            job = txn.get(JOBS, (namespace, job_id))
            if job is None:
                raise RPCError(f'job "{job_id}" not found', 404)
            target = job["Version"] if version is None else version
            for v in txn.list(JOB_VERSIONS, (namespace, job_id)):
                tag = v.get("VersionTag") or {}
                if tag.get("Name") == name and v["Version"] != target:
                    raise RPCError(f'tag "{name}" already exists on a different version of job')
            tag = {"Name": name, "Description": description, "TaggedTime": time.time_ns()}
            if not _set_tag(txn, namespace, job_id, target, tag):
                raise RPCError(
                    f'job "{job_id}" in namespace "{namespace}" at version {target} not found'
                )
            return tag

        return self._store.write(MSG_JOB_VERSION_TAG, txn_fn)

    def untag_version(self, namespace: str, job_id: str, name: str) -> int:
        def txn_fn(txn: Txn) -> None:
            for v in txn.list(JOB_VERSIONS, (namespace, job_id)):
                if (v.get("VersionTag") or {}).get("Name") == name:
                    _set_tag(txn, namespace, job_id, int(v["Version"]), None)
                    return
            raise RPCError(f'tag "{name}" not found on job "{job_id}"', 404)

        return self._store.write(MSG_JOB_VERSION_TAG, txn_fn)[1]


def copy_version_as_new(txn: Txn, namespace: str, job_id: str, version: int) -> Upserted:
    """Register a copy of a retained version as the newest one (Stable cleared, tag
    dropped); no evaluation. Shared by Job.Revert and the deployment watcher's
    auto-revert, whose caller has already checked that the version exists."""
    old = txn.get(JOB_VERSIONS, version_key(namespace, job_id, version))
    if old is None:
        raise RPCError(f'job "{job_id}" in namespace "{namespace}" at version {version} not found')
    copy = {**thaw(old), "Stable": False, "VersionTag": None}
    return upsert_job(txn, copy, trusted=True)


def _set_tag(
    txn: Txn, namespace: str, job_id: str, version: int, tag: dict[str, Any] | None
) -> bool:
    key = version_key(namespace, job_id, version)
    row = txn.get(JOB_VERSIONS, key)
    if row is None:
        return False
    txn.put(JOB_VERSIONS, key, {**thaw(row), "VersionTag": tag})
    job = txn.get(JOBS, (namespace, job_id))
    if job is not None and job["Version"] == version:
        txn.put(JOBS, (namespace, job_id), {**thaw(job), "VersionTag": tag})
    return True


def _set_transition(
    txn: Txn, namespace: str, job_id: str, key: str, *, failed_only: bool = False
) -> None:
    """Set DesiredTransition[key] on the job's allocs that still matter (live ones, or
    failed ones not yet replaced when `failed_only`)."""
    for alloc in lookups.allocs_by_job(txn, namespace, job_id):
        if failed_only:
            wanted = alloc.get("ClientStatus") == "failed" and not alloc.get("NextAllocation")
        else:
            wanted = not alloc_terminal(alloc)
        if not wanted:
            continue
        a = dict(alloc)
        a["DesiredTransition"] = {**(a.get("DesiredTransition") or {}), key: True}
        a["ModifyIndex"] = txn.index
        txn.put(ALLOCS, (a["ID"],), a)
