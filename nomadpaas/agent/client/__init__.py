"""The client half of the agent: alloc and task runners; mirrors client/."""
