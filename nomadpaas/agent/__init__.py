"""The embedded single-machine Nomad agent: Nomad's HTTP API over local processes.

`Agent`, `AgentConfig` and `main` are imported lazily so that importing a subpackage
(structs, the scheduler) does not pull in uvicorn and starlette.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nomadpaas.agent.agent import Agent, AgentConfig, main

__all__ = ["Agent", "AgentConfig", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nomadpaas.agent import agent

        return getattr(agent, name)
    raise AttributeError(f"module 'nomadpaas.agent' has no attribute {name!r}")
