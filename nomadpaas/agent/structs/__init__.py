"""Nomad's wire objects as PascalCase dicts: defaults, validation; mirrors nomad/structs."""
