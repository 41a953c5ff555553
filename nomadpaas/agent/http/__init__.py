"""The agent's HTTP endpoints; mirrors command/agent/*_endpoint.go."""
