"""Service registration and health checks of workloads (Consul and Nomad providers);
mirrors client/serviceregistration."""
