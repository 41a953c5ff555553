"""The embedded single-machine Nomad agent: Nomad's HTTP API over local processes."""
