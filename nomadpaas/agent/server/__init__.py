"""The server half of the agent: state store, brokers, watchers; mirrors nomad/."""
