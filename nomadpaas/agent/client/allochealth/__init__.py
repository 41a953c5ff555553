"""Client-side allocation health for deployments; mirrors client/allochealth."""
