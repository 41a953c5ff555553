"""The state store: single writer, raft-like index, persistence; mirrors nomad/state."""
