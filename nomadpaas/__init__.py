"""nomadpaas: a Heroku-style PaaS on HashiCorp Nomad.

The public surface is `Platform` (the library API every command calls), `Settings`, the
models and the errors. Nothing else is public.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
