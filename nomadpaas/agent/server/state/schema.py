"""The state store's tables, by name; mirrors nomad/state/schema.go.

Every table maps a key (a tuple of strings) to a row (a JSON object). Namespaced objects
use `(namespace, id)`; global ones use `(id,)`. Each table also has its own index (Nomad's
`index` table): the raft index of the last write that touched it, which list endpoints
report as `X-Nomad-Index`. Add a table by adding its name here; nothing else changes.
"""

from __future__ import annotations

VARIABLES = "variables"  # key (namespace, path); row: Variable with Items (+ Lock)
NODES = "nodes"  # key (node_id,); row: Node
NAMESPACES = "namespaces"  # key (name,); row: Namespace

TABLES: tuple[str, ...] = (VARIABLES, NODES, NAMESPACES)
