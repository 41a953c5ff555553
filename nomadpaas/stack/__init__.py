"""The embedded stack on one machine: agent + durable S3 (+ router), up/down/doctor."""
