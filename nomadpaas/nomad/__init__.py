"""Typed HTTP client for Nomad's API (a real cluster or the embedded agent); mirrors api/."""
