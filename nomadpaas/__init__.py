"""nomadpaas: a Heroku-style PaaS on HashiCorp Nomad.

The public surface is `Platform` (the library API every command calls), `Settings`, the
models, the errors and the config parsers. Nothing else is public. Names are imported
lazily on first access, so `import nomadpaas` (and `nomadpaas --help`) stays cheap.
"""

from __future__ import annotations

import sys

# Not `from typing import ...`: typing costs ~2.5 ms at every start (a build task is one).
# Nor `importlib` (with `warnings`, ~0.7 ms): `_import_module` does what is needed of it.
TYPE_CHECKING = False

__version__ = "0.1.0"

if TYPE_CHECKING:
    from typing import Any

    from nomadpaas import errors, models
    from nomadpaas.dotenv import parse_dotenv, parse_pairs
    from nomadpaas.errors import (
        AlreadyExists,
        BuildFailed,
        Conflict,
        DeployFailed,
        InvalidInput,
        NomadPaasError,
        NomadUnreachable,
        NotFound,
        PermissionDenied,
        StorageUnreachable,
        TimedOut,
        Unreachable,
    )
    from nomadpaas.models import App, ConfigVars, Release
    from nomadpaas.platform import Platform
    from nomadpaas.settings import Settings

#: public name → the module that defines it (None: the name is that module itself).
_LAZY: dict[str, str | None] = {
    "Platform": "nomadpaas.platform",
    "Settings": "nomadpaas.settings",
    "App": "nomadpaas.models",
    "ConfigVars": "nomadpaas.models",
    "Release": "nomadpaas.models",
    "parse_dotenv": "nomadpaas.dotenv",
    "parse_pairs": "nomadpaas.dotenv",
    "models": None,
    "errors": None,
    **{
        name: "nomadpaas.errors"
        for name in (
            "AlreadyExists",
            "BuildFailed",
            "Conflict",
            "DeployFailed",
            "InvalidInput",
            "NomadPaasError",
            "NomadUnreachable",
            "NotFound",
            "PermissionDenied",
            "StorageUnreachable",
            "TimedOut",
            "Unreachable",
        )
    },
}

__all__ = [
    "AlreadyExists",
    "App",
    "BuildFailed",
    "ConfigVars",
    "Conflict",
    "DeployFailed",
    "InvalidInput",
    "NomadPaasError",
    "NomadUnreachable",
    "NotFound",
    "PermissionDenied",
    "Platform",
    "Release",
    "Settings",
    "StorageUnreachable",
    "TimedOut",
    "Unreachable",
    "__version__",
    "errors",
    "models",
    "parse_dotenv",
    "parse_pairs",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nomadpaas' has no attribute {name!r}")
    module_name = _LAZY[name]
    value = (
        _import_module(f"nomadpaas.{name}")
        if module_name is None
        else getattr(_import_module(module_name), name)
    )
    globals()[name] = value
    return value


def _import_module(name: str) -> Any:
    """The module `name` (absolute), imported if need be: importlib.import_module(name)."""
    __import__(name)
    return sys.modules[name]


def __dir__() -> list[str]:
    return sorted(__all__)
