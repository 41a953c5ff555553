"""Small utilities shared across the agent's parts (mirrors Nomad's helper/ packages)."""
