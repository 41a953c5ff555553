"""Frozen dataclasses of the library: App, Release, ConfigVars and progress events (placeholder)."""
