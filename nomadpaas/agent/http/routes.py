"""The route table: every endpoint module, registered in one place; mirrors the handler
list in command/agent/http.go's registerHandlers.

A new endpoint module defines `register(router)` and is added to `ENDPOINT_MODULES`.
"""

from __future__ import annotations

from types import ModuleType

from nomadpaas.agent.http import (
    agent_endpoint,
    alloc_endpoint,
    client_alloc_endpoint,
    client_fs_endpoint,
    deployment_endpoint,
    eval_endpoint,
    event_endpoint,
    job_endpoint,
    namespace_endpoint,
    node_endpoint,
    service_endpoint,
    status_endpoint,
    system_endpoint,
    variable_endpoint,
)
from nomadpaas.agent.http.server import Router

ENDPOINT_MODULES: tuple[ModuleType, ...] = (
    client_fs_endpoint,
    client_alloc_endpoint,
    agent_endpoint,
    status_endpoint,
    node_endpoint,
    namespace_endpoint,
    variable_endpoint,
    service_endpoint,  # before job_endpoint: /v1/job/:id/services beats its catch-all
    job_endpoint,
    alloc_endpoint,
    eval_endpoint,
    deployment_endpoint,
    system_endpoint,
    event_endpoint,
)


def build_router() -> Router:
    """A router holding every endpoint module's routes."""
    router = Router()
    for module in ENDPOINT_MODULES:
        module.register(router)
    return router
