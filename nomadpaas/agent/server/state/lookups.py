"""Secondary lookups over the tables (allocs by job or node, evals by job, deployments
by job, versions of a job); mirrors the `*ByJob`/`*ByNode` indexes of nomad/state/schema.go.

The by-field lookups read the store's secondary indexes (schema.INDEXES, kept current
on every commit by indexes.py), so they cost the rows found, not the table's size; inside
a write transaction the transaction's own pending rows are applied on top.
"""

from __future__ import annotations

from typing import Any, Protocol

from nomadpaas.agent.server.state.schema import (
    ALLOCS,
    DEPLOYMENTS,
    EVALS,
    INDEX_DEPLOYMENT,
    INDEX_EVAL,
    INDEX_JOB,
    INDEX_NODE,
    JOB_VERSIONS,
)

Row = Any
Rows = list[Row]  # an alias: `Reader` has a method named `list`


class Reader(Protocol):
    """What both `Snapshot` and `Txn` offer for reads."""

    def get(self, table: str, key: tuple[str, ...]) -> Row | None: ...

    def list(self, table: str, prefix: tuple[str, ...] = ()) -> Rows: ...

    def by_index(self, table: str, index: str, value: tuple[Any, ...]) -> Rows: ...


def allocs_by_job(
    r: Reader, namespace: str, job_id: str, create_index: int | None = None
) -> list[Row]:
    """Allocations of a job, sorted by ID; with `create_index`, only the job's current
    incarnation."""
    out = r.by_index(ALLOCS, INDEX_JOB, (namespace, job_id))
    if create_index is not None:
        out = [a for a in out if (a.get("Job") or {}).get("CreateIndex") == create_index]
    return out


def allocs_by_node(r: Reader, node_id: str) -> list[Row]:
    return r.by_index(ALLOCS, INDEX_NODE, (node_id,))


def allocs_by_eval(r: Reader, eval_id: str) -> list[Row]:
    return r.by_index(ALLOCS, INDEX_EVAL, (eval_id,))


def allocs_by_deployment(r: Reader, deployment_id: str) -> list[Row]:
    return r.by_index(ALLOCS, INDEX_DEPLOYMENT, (deployment_id,))


def evals_by_job(r: Reader, namespace: str, job_id: str) -> list[Row]:
    return r.by_index(EVALS, INDEX_JOB, (namespace, job_id))


def deployments_by_job(
    r: Reader, namespace: str, job_id: str, create_index: int | None = None
) -> list[Row]:
    """Deployments of a job, newest (highest CreateIndex) first."""
    out = r.by_index(DEPLOYMENTS, INDEX_JOB, (namespace, job_id))
    if create_index is not None:
        out = [d for d in out if d.get("JobCreateIndex") == create_index]
    return sorted(out, key=lambda d: -int(d.get("CreateIndex") or 0))


def latest_deployment(
    r: Reader, namespace: str, job_id: str, create_index: int | None = None
) -> Row | None:
    found = deployments_by_job(r, namespace, job_id, create_index)
    return found[0] if found else None


def job_versions(r: Reader, namespace: str, job_id: str) -> list[Row]:
    """Every retained version of a job, highest version first."""
    return list(reversed(r.list(JOB_VERSIONS, (namespace, job_id))))
