"""The agent's Consul-compatible HTTP API (catalog, health, agent, status) over the
service registry; mirrors the subset of Consul's agent/http_register.go that
Consul-provider service discovery needs."""
