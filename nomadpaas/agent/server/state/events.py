"""Turns committed state-store writes into event-stream events; mirrors
nomad/state/events.go.

Nothing publishes events by hand: `attach(store, broker)` subscribes to the store, and
every `Commit` whose message type is in `MSG_TYPE_EVENTS` becomes one `Events` batch at
the commit's index, one `Event` per changed row of an evented table, all carrying the
type of the message that caused the write (so an Evaluation written by a job register
is a `JobRegistered` event). Message types missing from the table (job stability,
version tags, scaling events, namespaces) produce no events, as in Nomad CE.

Deletions produce events only for Jobs (`Deleted: true`), Nodes, Variables
(`Deleted: true`) and service registrations; deleted (garbage-collected) evaluations,
allocations and deployments produce none, as in Nomad.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from nomadpaas.agent.server.state import schema
from nomadpaas.agent.server.state.state_store import Change, Commit, StateStore
from nomadpaas.agent.structs import event as ev
from nomadpaas.agent.structs.event import Event, Events
from nomadpaas.agent.structs.variable import metadata as variable_metadata

# Nomad's service registrations table name; the agent has no such table yet, but the
# events are ready for it (Service topic, FilterKeys [JobID, ServiceName]).
SERVICE_REGISTRATIONS = "service_registrations"
# structs.AllocTimeoutReasonMaxRunDuration: the ClientDescription of a timed-out alloc.
ALLOC_TIMEOUT_REASON = "allocation exceeded max_run_duration"

# Message type → event type: Nomad's MsgTypeEvents (CE), plus the names some agent
# writers use for the same messages (marked "agent alias").
MSG_TYPE_EVENTS: Mapping[str, str] = {
    "NodeRegisterRequestType": ev.TYPE_NODE_REGISTRATION,
    "NodeDeregisterRequestType": ev.TYPE_NODE_DEREGISTRATION,
    "UpsertNodeEventsType": ev.TYPE_NODE_EVENT,
    "NodePoolUpsertRequestType": ev.TYPE_NODE_POOL_UPSERTED,
    "NodePoolDeleteRequestType": ev.TYPE_NODE_POOL_DELETED,
    "EvalUpdateRequestType": ev.TYPE_EVAL_UPDATED,
    "AllocClientUpdateRequestType": ev.TYPE_ALLOCATION_UPDATED,
    "JobRegisterRequestType": ev.TYPE_JOB_REGISTERED,
    "NodeUpdateStatusRequestType": ev.TYPE_NODE_EVENT,
    "JobDeregisterRequestType": ev.TYPE_JOB_DEREGISTERED,
    "JobBatchDeregisterRequestType": ev.TYPE_JOB_BATCH_DEREGISTERED,
    "AllocUpdateDesiredTransitionRequestType": ev.TYPE_ALLOCATION_UPDATE_DESIRED_STATUS,
    "NodeUpdateEligibilityRequestType": ev.TYPE_NODE_ELIGIBILITY_UPDATE,
    "NodeUpdateDrainRequestType": ev.TYPE_NODE_DRAIN,
    "BatchNodeUpdateDrainRequestType": ev.TYPE_NODE_DRAIN,
    "DeploymentStatusUpdateRequestType": ev.TYPE_DEPLOYMENT_UPDATE,
    "DeploymentPromoteRequestType": ev.TYPE_DEPLOYMENT_PROMOTION,
    "DeploymentAllocHealthRequestType": ev.TYPE_DEPLOYMENT_ALLOC_HEALTH,
    "ApplyPlanResultsRequestType": ev.TYPE_PLAN_RESULT,
    "PlanResult": ev.TYPE_PLAN_RESULT,  # agent alias (server/plan_apply.py)
    "ACLTokenDeleteRequestType": ev.TYPE_ACL_TOKEN_DELETED,
    "ACLTokenUpsertRequestType": ev.TYPE_ACL_TOKEN_UPSERTED,
    "ACLPolicyDeleteRequestType": ev.TYPE_ACL_POLICY_DELETED,
    "ACLPolicyUpsertRequestType": ev.TYPE_ACL_POLICY_UPSERTED,
    "ServiceRegistrationUpsertRequestType": ev.TYPE_SERVICE_REGISTRATION,
    "ServiceRegistrationDeleteByIDRequestType": ev.TYPE_SERVICE_DEREGISTRATION,
    "ServiceRegistrationDeleteByNodeIDRequestType": ev.TYPE_SERVICE_DEREGISTRATION,
    "VarApplyStateRequestType": ev.TYPE_VARIABLE_UPDATED,
    "VarApply": ev.TYPE_VARIABLE_UPDATED,  # agent alias (server/variables_endpoint.py)
}

Row = Mapping[str, Any]
# (topic, key, namespace, filter keys, payload) of one changed row; None = no event.
Shape = tuple[str, str, str, tuple[str, ...] | None, Mapping[str, Any]]
ShapeFn = Callable[[Row, bool], Shape | None]


class Publisher(Protocol):
    """What `attach` feeds: the event broker (stream/event_broker.py)."""

    def publish(self, events: Events) -> None: ...


def events_from_commit(commit: Commit) -> Events | None:
    """The events of one commit (nomad eventsFromChanges); None when it has none."""
    event_type = MSG_TYPE_EVENTS.get(commit.msg_type)
    if event_type is None:
        return None
    out = [e for c in commit.changes if (e := event_from_change(c, event_type, commit.index))]
    return Events(commit.index, tuple(out)) if out else None


def event_from_change(change: Change, event_type: str, index: int) -> Event | None:
    shape_fn = _SHAPES.get(change.table)
    if shape_fn is None:
        return None
    shape = shape_fn(change.obj, change.deleted)
    if shape is None:
        return None
    topic, key, namespace, filter_keys, payload = shape
    return Event(topic, event_type, key, namespace, filter_keys, index, payload)


def attach(store: StateStore, broker: Publisher) -> Callable[[], None]:
    """Feed every commit's events to `broker`; returns the unsubscribe function.

    Runs on the writer's thread under the write lock: building an `Events` only wraps
    the frozen rows (the allocation payload copies one dict level), and `publish` never
    blocks.
    """

    def on_commit(commit: Commit) -> None:
        events = events_from_commit(commit)
        if events is not None:
            broker.publish(events)

    return store.subscribe(on_commit)


# -- one function per evented table -----------------------------------------------------


def _str(row: Row, field: str) -> str:
    """A string field as Go would render it: "" when missing or null."""
    return str(row.get(field) or "")


def _job(row: Row, deleted: bool) -> Shape:
    payload: dict[str, Any] = {"Job": row}
    if deleted:
        payload["Deleted"] = True  # JobEvent.Deleted is omitempty
    return ev.TOPIC_JOB, row["ID"], _str(row, "Namespace"), None, payload


def _eval(row: Row, deleted: bool) -> Shape | None:
    if deleted:
        return None
    keys = (_str(row, "JobID"), _str(row, "DeploymentID"))
    payload = {"Evaluation": row}
    return ev.TOPIC_EVALUATION, row["ID"], _str(row, "Namespace"), keys, payload


def _alloc(row: Row, deleted: bool) -> Shape | None:
    if deleted:
        return None
    # The embedded Job is dropped to keep events small; identities are sanitized away.
    alloc = dict(row)
    alloc["Job"] = None
    if "SignedIdentities" in alloc:
        alloc["SignedIdentities"] = None
    payload: dict[str, Any] = {"Allocation": alloc}
    if (
        row.get("ClientStatus") == "complete"
        and row.get("ClientDescription") == ALLOC_TIMEOUT_REASON
    ):
        payload["Timeout"] = True
        payload["TimeoutReason"] = ALLOC_TIMEOUT_REASON
    keys = (_str(row, "JobID"), _str(row, "DeploymentID"))
    return ev.TOPIC_ALLOCATION, row["ID"], _str(row, "Namespace"), keys, payload


def _deployment(row: Row, deleted: bool) -> Shape | None:
    if deleted:
        return None
    keys = (_str(row, "JobID"),)
    payload = {"Deployment": row}
    return ev.TOPIC_DEPLOYMENT, row["ID"], _str(row, "Namespace"), keys, payload


def _node(row: Row, deleted: bool) -> Shape:
    node = row
    if node.get("SecretID"):
        node = dict(row)
        node["SecretID"] = ""  # Node.Sanitize
    return ev.TOPIC_NODE, row["ID"], "", None, {"Node": node}


def _variable(row: Row, deleted: bool) -> Shape:
    # Metadata only: a variable's Items never enter the stream.
    payload = {"Metadata": variable_metadata(row), "Deleted": deleted}
    return ev.TOPIC_VARIABLE, row["Path"], _str(row, "Namespace"), None, payload


def _service(row: Row, deleted: bool) -> Shape:
    keys = (_str(row, "JobID"), _str(row, "ServiceName"))
    payload = {"Service": row}
    return ev.TOPIC_SERVICE, row["ID"], _str(row, "Namespace"), keys, payload


_SHAPES: Mapping[str, ShapeFn] = {
    schema.JOBS: _job,
    schema.EVALS: _eval,
    schema.ALLOCS: _alloc,
    schema.DEPLOYMENTS: _deployment,
    schema.NODES: _node,
    schema.VARIABLES: _variable,
    SERVICE_REGISTRATIONS: _service,
}
