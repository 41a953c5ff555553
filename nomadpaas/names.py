"""Validation of the names users type: app names, config keys, release versions."""

from __future__ import annotations

import re

from nomadpaas.errors import InvalidInput

__all__ = [
    "APP_NAME_MAX",
    "parse_version",
    "validate_app_name",
    "validate_config_key",
    "validate_config_value",
]

#: App names become DNS labels (`<app>.<domain>`), Nomad job IDs and variable paths; 30
#: leaves room for suffixes such as `-run` within Nomad's limits.
APP_NAME_MAX = 30
_APP_RE = re.compile(r"^[a-z][a-z0-9-]*$")
#: What a POSIX shell accepts as an environment variable name.
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERSION_RE = re.compile(r"^[vV]?([0-9]+)$")

APP_NAME_RULE = (
    f"App names are 1-{APP_NAME_MAX} characters: lowercase letters, digits and hyphens, "
    "starting with a letter and not ending with a hyphen."
)


def validate_app_name(name: str) -> str:
    """`name` if it is a valid app name, else InvalidInput naming the rule."""
    if not 1 <= len(name) <= APP_NAME_MAX or not _APP_RE.match(name) or name.endswith("-"):
        raise InvalidInput(f"Invalid app name {name!r}.", hint=APP_NAME_RULE)
    return name


def validate_config_key(key: str) -> str:
    """`key` if it is a valid environment variable name, else InvalidInput."""
    if not _KEY_RE.match(key):
        raise InvalidInput(
            f"Invalid config var name {key!r}.",
            hint="Names are letters, digits and underscores, not starting with a digit "
            "(like DATABASE_URL).",
        )
    return key


def validate_config_value(key: str, value: str) -> str:
    """`value` unless it is not a string or holds a NUL byte (no environment can carry it)."""
    if not isinstance(value, str):
        raise InvalidInput(f"The value of {key} must be a string, not {type(value).__name__}.")
    if "\x00" in value:
        raise InvalidInput(
            f"The value of {key} contains a NUL byte, which an environment cannot hold."
        )
    return value


def parse_version(text: str | int) -> int:
    """A release version from `v12`, `12` or 12; InvalidInput otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        number = text
    else:
        match = _VERSION_RE.match(str(text).strip())
        if not match:
            raise InvalidInput(
                f"Invalid release {text!r}.", hint="Name a release like v12 (or 12)."
            )
        number = int(match.group(1))
    if number < 1:
        raise InvalidInput(f"Invalid release {text!r}.", hint="Releases start at v1.")
    return number
