"""The Platform facade: the library API every command calls (placeholder until filled in)."""
