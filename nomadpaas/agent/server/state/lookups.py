"""Secondary lookups over the tables (allocs by job or node, evals by job, deployments
by job, versions of a job); mirrors the `*ByJob`/`*ByNode` indexes of nomad/state/schema.go.

The by-job lookups use an index built once per version of a table and cached: the
state store copies a table's dict only when a write touches that table, so the dict's
identity says whether a cached index is still current. Inside a write transaction the
index of the base snapshot is corrected by the transaction's own pending rows. (This
reads the store's `_tables`/`_base`/`_pending` internals; a public "rows of a table,
unsorted" and "keys this txn touched" on Snapshot/Txn would remove that coupling.)
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from nomadpaas.agent.server.state.schema import ALLOCS, DEPLOYMENTS, EVALS, JOB_VERSIONS
from nomadpaas.agent.server.state.state_store import Snapshot, Txn

Row = Any
JobKey = tuple[str, str]


class Reader(Protocol):
    """What both `Snapshot` and `Txn` offer for reads."""

    def get(self, table: str, key: tuple[str, ...]) -> Row | None: ...

    def list(self, table: str, prefix: tuple[str, ...] = ()) -> list[Row]: ...


_lock = threading.Lock()
# table name -> (the table dict the index was built from, {(namespace, job_id): rows})
_job_index: dict[str, tuple[object, dict[JobKey, list[Row]]]] = {}


def _snapshot_index(snap: Snapshot, table: str) -> dict[JobKey, list[Row]]:
    rows = snap._tables[table]
    with _lock:
        cached = _job_index.get(table)
        if cached is not None and cached[0] is rows:
            return cached[1]
    index: dict[JobKey, list[Row]] = {}
    for row in rows.values():
        index.setdefault((row["Namespace"], row["JobID"]), []).append(row)
    with _lock:
        _job_index[table] = (rows, index)
    return index


def _by_job(r: Reader, table: str, namespace: str, job_id: str) -> list[Row]:
    """Rows of `table` whose (Namespace, JobID) match, sorted by key."""
    if isinstance(r, Snapshot):
        found = list(_snapshot_index(r, table).get((namespace, job_id), ()))
    elif isinstance(r, Txn):
        pending = r._pending.get(table, {})
        base = _snapshot_index(r._base, table).get((namespace, job_id), ())
        found = [row for row in base if (row["ID"],) not in pending]
        for key in pending:
            row = r.get(table, key)
            if row is not None and row["Namespace"] == namespace and row["JobID"] == job_id:
                found.append(row)
    else:
        found = [
            row for row in r.list(table) if row["JobID"] == job_id and row["Namespace"] == namespace
        ]
    return sorted(found, key=lambda row: str(row["ID"]))


def allocs_by_job(
    r: Reader, namespace: str, job_id: str, create_index: int | None = None
) -> list[Row]:
    """Allocations of a job; with `create_index`, only the job's current incarnation."""
    out = _by_job(r, ALLOCS, namespace, job_id)
    if create_index is not None:
        out = [a for a in out if (a.get("Job") or {}).get("CreateIndex") == create_index]
    return out


def allocs_by_node(r: Reader, node_id: str) -> list[Row]:
    return [a for a in r.list(ALLOCS) if a["NodeID"] == node_id]


def allocs_by_eval(r: Reader, eval_id: str) -> list[Row]:
    return [a for a in r.list(ALLOCS) if a["EvalID"] == eval_id]


def allocs_by_deployment(r: Reader, deployment_id: str) -> list[Row]:
    return [a for a in r.list(ALLOCS) if a.get("DeploymentID") == deployment_id]


def evals_by_job(r: Reader, namespace: str, job_id: str) -> list[Row]:
    return _by_job(r, EVALS, namespace, job_id)


def deployments_by_job(
    r: Reader, namespace: str, job_id: str, create_index: int | None = None
) -> list[Row]:
    """Deployments of a job, newest (highest CreateIndex) first."""
    out = [d for d in r.list(DEPLOYMENTS) if d["JobID"] == job_id and d["Namespace"] == namespace]
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
