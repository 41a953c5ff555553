"""What the client needs from the server: the ServerRPC protocol; mirrors the Node.GetClientAllocs
and Node.UpdateAlloc RPCs the Nomad client calls (client/client.go).

The protocol belongs to its consumer (the client); the agent hands in a store-backed
implementation, tests hand in an in-memory fake.
"""

from __future__ import annotations

from typing import Any, Protocol


class ServerRPC(Protocol):
    def get_client_allocs(
        self, node_id: str, min_index: int, timeout_s: float
    ) -> tuple[list[dict[str, Any]], int]:
        """Blocking query: the node's allocations (with `Job` embedded) once the index passes
        `min_index`, or after `timeout_s`; returns (allocs, index)."""
        ...

    def update_allocs(self, updates: list[dict[str, Any]]) -> int:
        """Client-side alloc updates (`ID`, `ClientStatus`, `ClientDescription`, `TaskStates`,
        optional `DeploymentStatus`, `NetworkStatus`); returns the write index."""
        ...
