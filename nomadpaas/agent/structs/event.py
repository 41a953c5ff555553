"""Event stream vocabulary: topics, event types, `Event` and `Events`; mirrors
nomad/structs/event.go.

An `Event` is one changed object as the event stream shows it; `Events` is everything
one state-store write produced, at that write's index (one NDJSON line per subscriber).
Both are immutable and shared by every subscriber: never change them after creation.
An event's JSON is rendered once, on first use, and then reused by every subscriber.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Topics (structs.Topic*). `*` subscribes to every topic.
TOPIC_DEPLOYMENT = "Deployment"
TOPIC_EVALUATION = "Evaluation"
TOPIC_ALLOCATION = "Allocation"
TOPIC_JOB = "Job"
TOPIC_NODE = "Node"
TOPIC_NODE_POOL = "NodePool"
TOPIC_ACL_POLICY = "ACLPolicy"
TOPIC_ACL_TOKEN = "ACLToken"
TOPIC_ACL_ROLE = "ACLRole"
TOPIC_ACL_AUTH_METHOD = "ACLAuthMethod"
TOPIC_ACL_BINDING_RULE = "ACLBindingRule"
TOPIC_SERVICE = "Service"
TOPIC_HOST_VOLUME = "HostVolume"
TOPIC_CSI_VOLUME = "CSIVolume"
TOPIC_CSI_PLUGIN = "CSIPlugin"
TOPIC_OPERATOR = "Operator"
TOPIC_VARIABLE = "Variable"
TOPIC_ALL = "*"

# Event types (structs.Type*): named after the write that caused the event.
TYPE_NODE_REGISTRATION = "NodeRegistration"
TYPE_NODE_DEREGISTRATION = "NodeDeregistration"
TYPE_NODE_ELIGIBILITY_UPDATE = "NodeEligibility"
TYPE_NODE_DRAIN = "NodeDrain"
TYPE_NODE_EVENT = "NodeStreamEvent"
TYPE_NODE_POOL_UPSERTED = "NodePoolUpserted"
TYPE_NODE_POOL_DELETED = "NodePoolDeleted"
TYPE_DEPLOYMENT_UPDATE = "DeploymentStatusUpdate"
TYPE_DEPLOYMENT_PROMOTION = "DeploymentPromotion"
TYPE_DEPLOYMENT_ALLOC_HEALTH = "DeploymentAllocHealth"
TYPE_ALLOCATION_UPDATED = "AllocationUpdated"
TYPE_ALLOCATION_UPDATE_DESIRED_STATUS = "AllocationUpdateDesiredStatus"
TYPE_EVAL_UPDATED = "EvaluationUpdated"
TYPE_JOB_REGISTERED = "JobRegistered"
TYPE_JOB_DEREGISTERED = "JobDeregistered"
TYPE_JOB_BATCH_DEREGISTERED = "JobBatchDeregistered"
TYPE_PLAN_RESULT = "PlanResult"
TYPE_ACL_TOKEN_DELETED = "ACLTokenDeleted"
TYPE_ACL_TOKEN_UPSERTED = "ACLTokenUpserted"
TYPE_ACL_POLICY_DELETED = "ACLPolicyDeleted"
TYPE_ACL_POLICY_UPSERTED = "ACLPolicyUpserted"
TYPE_SERVICE_REGISTRATION = "ServiceRegistration"
TYPE_SERVICE_DEREGISTRATION = "ServiceDeregistration"
TYPE_VARIABLE_UPDATED = "VariableUpdated"


@dataclass(frozen=True)
class Event:
    """One changed object (structs.Event). `namespace` is "" for global objects (Node),
    which pass every namespace filter; `filter_keys` None renders as JSON null."""

    topic: str
    type: str
    key: str
    namespace: str
    filter_keys: tuple[str, ...] | None
    index: int
    payload: Mapping[str, Any]
    # The rendered JSON, filled on first use; compare=False keeps it out of __eq__/repr.
    _json: list[bytes] = field(default_factory=list, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "Topic": self.topic,
            "Type": self.type,
            "Key": self.key,
            "Namespace": self.namespace,
            "FilterKeys": list(self.filter_keys) if self.filter_keys is not None else None,
            "Index": self.index,
            "Payload": self.payload,
        }

    def json_bytes(self) -> bytes:
        """This event as compact JSON, rendered once (two racing readers render the same
        bytes, so the race is harmless)."""
        if not self._json:
            rendered = json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)
            self._json.append(rendered.encode())
        return self._json[0]


@dataclass(frozen=True)
class Events:
    """Everything one state-store write produced (structs.Events)."""

    index: int
    events: tuple[Event, ...]
