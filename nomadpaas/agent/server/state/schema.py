"""The state store's tables, by name; mirrors nomad/state/schema.go.

Every table maps a key (a tuple of strings) to a row (a JSON object). Namespaced objects
use `(namespace, id)`; global ones use `(id,)`. Each table also has its own index (Nomad's
`index` table): the raft index of the last write that touched it, which list endpoints
report as `X-Nomad-Index`. Add a table by adding its name here; nothing else changes.

Scheduling tables (issue 3), keyed the way their readers look them up:
- `jobs` (namespace, job_id): the current Job version, server fields included (Status,
  Version, Stable, SubmitTime, Create/Modify/JobModifyIndex).
- `job_versions` (namespace, job_id, version zero-padded to 20 digits so keys sort in
  version order): every retained version (at most 6, never the newest Stable nor a tagged
  one).
- `job_summaries` (namespace, job_id): JobSummary {JobID, Namespace, Summary{group:
  {Queued, Complete, Failed, Running, Starting, Lost, Unknown}}, Children{Pending,
  Running, Dead}, CreateIndex, ModifyIndex}.
- `evals` (eval_id,): Evaluation; its Namespace and JobID are fields.
- `allocs` (alloc_id,): Allocation with its Job embedded (the version it was placed from).
- `deployments` (deployment_id,): Deployment.
- `scaling_events` (namespace, job_id): {"ScalingEvents": {group: [ScalingEvent, newest
  first]}, "ModifyIndex"}.
"""

from __future__ import annotations

VARIABLES = "variables"  # key (namespace, path); row: Variable with Items (+ Lock)
NODES = "nodes"  # key (node_id,); row: Node
NAMESPACES = "namespaces"  # key (name,); row: Namespace
JOBS = "jobs"  # key (namespace, job_id); row: Job (latest version)
JOB_VERSIONS = "job_versions"  # key (namespace, job_id, f"{version:020d}"); row: Job
JOB_SUMMARIES = "job_summaries"  # key (namespace, job_id); row: JobSummary
EVALS = "evals"  # key (eval_id,); row: Evaluation
ALLOCS = "allocs"  # key (alloc_id,); row: Allocation (Job embedded)
DEPLOYMENTS = "deployments"  # key (deployment_id,); row: Deployment
SCALING_EVENTS = "scaling_events"  # key (namespace, job_id); row: JobScalingEvents
# key (namespace, service_name, id); row: ServiceRegistration (Nomad-provider services)
SERVICE_REGISTRATIONS = "service_registrations"

TABLES: tuple[str, ...] = (
    VARIABLES,
    NODES,
    NAMESPACES,
    JOBS,
    JOB_VERSIONS,
    JOB_SUMMARIES,
    EVALS,
    ALLOCS,
    DEPLOYMENTS,
    SCALING_EVENTS,
    SERVICE_REGISTRATIONS,
)


# Secondary indexes (the non-`id` indexes of nomad/state/schema.go): table → index name →
# the row fields whose values (a tuple, None for a missing field) the index groups by.
# The store keeps each one current on every commit; `by_index` reads them.
INDEX_JOB = "job"
INDEX_NODE = "node"
INDEX_EVAL = "eval"
INDEX_DEPLOYMENT = "deployment"
INDEXES: dict[str, dict[str, tuple[str, ...]]] = {
    ALLOCS: {
        INDEX_JOB: ("Namespace", "JobID"),
        INDEX_NODE: ("NodeID",),
        INDEX_EVAL: ("EvalID",),
        INDEX_DEPLOYMENT: ("DeploymentID",),
    },
    EVALS: {INDEX_JOB: ("Namespace", "JobID")},
    DEPLOYMENTS: {INDEX_JOB: ("Namespace", "JobID")},
}


# Counted indexes (tallies.py): table → name → (group fields, counted fields); a field is
# a name or a path into nested objects. Job summaries and statuses read `job_allocs`:
# per (Namespace, JobID), how many allocations of each incarnation (the embedded Job's
# CreateIndex), task group, ClientStatus and DesiredStatus there are.
TALLY_JOB_ALLOCS = "job_allocs"
TallyFields = tuple[str | tuple[str, ...], ...]
TALLIES: dict[str, dict[str, tuple[TallyFields, TallyFields]]] = {
    ALLOCS: {
        TALLY_JOB_ALLOCS: (
            ("Namespace", "JobID"),
            (("Job", "CreateIndex"), "TaskGroup", "ClientStatus", "DesiredStatus"),
        )
    },
}


# Watch indexes (watches.py): table → name → (group fields, watched fields). A commit moves
# a group's watch index when it adds or removes one of the group's rows or changes a
# watched field of one. `node_allocs`: per NodeID, the allocation fields the node's client
# acts on (client.py `_change_key`); the client's own status updates move nothing.
WATCH_NODE_ALLOCS = "node_allocs"
WATCHES: dict[str, dict[str, tuple[TallyFields, TallyFields]]] = {
    ALLOCS: {
        WATCH_NODE_ALLOCS: (
            ("NodeID",),
            (
                "AllocModifyIndex",
                "DesiredStatus",
                "DesiredTransition",
                ("Job", "JobModifyIndex"),
                ("Job", "Version"),
            ),
        )
    },
}


def version_key(namespace: str, job_id: str, version: int) -> tuple[str, str, str]:
    """The `job_versions` key of one version; zero-padded so keys sort by version."""
    return (namespace, job_id, f"{version:020d}")
