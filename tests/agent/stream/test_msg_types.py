"""Every message type an agent writer uses is one Nomad knows (or a listed alias), so a
misspelt name cannot silently drop its events; the event table only names real ones."""

from __future__ import annotations

import re
from pathlib import Path

import nomadpaas.agent
from nomadpaas.agent.server.state.events import MSG_TYPE_EVENTS

# nomad/structs/structs.go MessageType constants (snapshot aa026cc), in order.
NOMAD_MESSAGE_TYPES = frozenset(
    [
        "NodeRegisterRequestType",
        "NodeDeregisterRequestType",
        "NodeUpdateStatusRequestType",
        "NodeUpdateDrainRequestType",
        "JobRegisterRequestType",
        "JobDeregisterRequestType",
        "EvalUpdateRequestType",
        "EvalDeleteRequestType",
        "AllocUpdateRequestType",
        "AllocClientUpdateRequestType",
        "ReconcileJobSummariesRequestType",
        "VaultAccessorRegisterRequestType",
        "VaultAccessorDeregisterRequestType",
        "ApplyPlanResultsRequestType",
        "DeploymentStatusUpdateRequestType",
        "DeploymentPromoteRequestType",
        "DeploymentAllocHealthRequestType",
        "DeploymentDeleteRequestType",
        "JobStabilityRequestType",
        "ACLPolicyUpsertRequestType",
        "ACLPolicyDeleteRequestType",
        "ACLTokenUpsertRequestType",
        "ACLTokenDeleteRequestType",
        "ACLTokenBootstrapRequestType",
        "AutopilotRequestType",
        "UpsertNodeEventsType",
        "JobBatchDeregisterRequestType",
        "AllocUpdateDesiredTransitionRequestType",
        "NodeUpdateEligibilityRequestType",
        "BatchNodeUpdateDrainRequestType",
        "SchedulerConfigRequestType",
        "NodeBatchDeregisterRequestType",
        "ClusterMetadataRequestType",
        "ServiceIdentityAccessorRegisterRequestType",
        "ServiceIdentityAccessorDeregisterRequestType",
        "CSIVolumeRegisterRequestType",
        "CSIVolumeDeregisterRequestType",
        "CSIVolumeClaimRequestType",
        "ScalingEventRegisterRequestType",
        "CSIVolumeClaimBatchRequestType",
        "CSIPluginDeleteRequestType",
        "EventSinkUpsertRequestType",
        "EventSinkDeleteRequestType",
        "BatchEventSinkUpdateProgressType",
        "OneTimeTokenUpsertRequestType",
        "OneTimeTokenDeleteRequestType",
        "OneTimeTokenExpireRequestType",
        "ServiceRegistrationUpsertRequestType",
        "ServiceRegistrationDeleteByIDRequestType",
        "ServiceRegistrationDeleteByNodeIDRequestType",
        "VarApplyStateRequestType",
        "RootKeyMetaUpsertRequestType",
        "WrappedRootKeysDeleteRequestType",
        "ACLRolesUpsertRequestType",
        "ACLRolesDeleteByIDRequestType",
        "ACLAuthMethodsUpsertRequestType",
        "ACLAuthMethodsDeleteRequestType",
        "ACLBindingRulesUpsertRequestType",
        "ACLBindingRulesDeleteRequestType",
        "NodePoolUpsertRequestType",
        "NodePoolDeleteRequestType",
        "JobVersionTagRequestType",
        "WrappedRootKeysUpsertRequestType",
        "NamespaceUpsertRequestType",
        "NamespaceDeleteRequestType",
        "HostVolumeRegisterRequestType",
        "HostVolumeDeleteRequestType",
        "TaskGroupHostVolumeClaimDeleteRequestType",
    ]
)
# Names agent writers use instead of Nomad's: alias → the Nomad message it stands for.
AGENT_ALIASES = {
    "PlanResult": "ApplyPlanResultsRequestType",
    "VarApply": "VarApplyStateRequestType",
    "NamespaceUpsert": "NamespaceUpsertRequestType",
    "NamespaceDelete": "NamespaceDeleteRequestType",
    "EvalReapRequestType": "EvalDeleteRequestType",
}
MSG_CONSTANT = re.compile(r'^MSG_[A-Z0-9_]+ = "([A-Za-z]+)"', re.MULTILINE)
AGENT_ROOT = Path(nomadpaas.agent.__file__).parent


def agent_message_types() -> dict[str, str]:
    """Every `MSG_X = "..."` in the agent's server side: name → defining file."""
    found: dict[str, str] = {}
    for path in AGENT_ROOT.rglob("*.py"):
        if "client" in path.relative_to(AGENT_ROOT).parts:
            continue  # the client's MSG_ constants are task event messages, not writes
        for name in MSG_CONSTANT.findall(path.read_text()):
            found[name] = str(path.relative_to(AGENT_ROOT))
    return found


def test_agent_writers_use_known_message_types() -> None:
    found = agent_message_types()
    assert "JobRegisterRequestType" in found  # the scan works
    unknown = {
        name: where
        for name, where in found.items()
        if name not in NOMAD_MESSAGE_TYPES and name not in AGENT_ALIASES
    }
    assert not unknown, (
        f"message types Nomad does not have: {unknown}; use Nomad's name, or add an alias "
        "here and (if Nomad emits events for it) to MSG_TYPE_EVENTS"
    )


def test_aliases_map_like_the_nomad_names_they_stand_for() -> None:
    for alias, nomad_name in AGENT_ALIASES.items():
        assert MSG_TYPE_EVENTS.get(alias) == MSG_TYPE_EVENTS.get(nomad_name), alias


def test_event_table_names_only_real_message_types() -> None:
    for name in MSG_TYPE_EVENTS:
        assert name in NOMAD_MESSAGE_TYPES or name in AGENT_ALIASES, name
