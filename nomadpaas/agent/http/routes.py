"""The route table: every endpoint module, registered in one place; mirrors the handler
list in command/agent/http.go's registerHandlers.

A new endpoint module defines `register(router)` and is added to `ENDPOINT_MODULES`.
"""

from __future__ import annotations

from types import ModuleType

from nomadpaas.agent.http import (
    agent_endpoint,
    namespace_endpoint,
    node_endpoint,
    status_endpoint,
    variable_endpoint,
)
from nomadpaas.agent.http.server import Router

ENDPOINT_MODULES: tuple[ModuleType, ...] = (
    agent_endpoint,
    status_endpoint,
    node_endpoint,
    namespace_endpoint,
    variable_endpoint,
)


def build_router() -> Router:
    """A router holding every endpoint module's routes."""
    router = Router()
    for module in ENDPOINT_MODULES:
        module.register(router)
    return router
