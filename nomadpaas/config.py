"""Config vars (12factor III): read, and change with CAS, recording a new release.

The variable `nomadpaas/apps/<app>/config` holds the vars as its Items. Nomad refuses an
empty variable, so "no config" is "no variable": the last `unset` deletes it. Every write
is a check-and-set on the ModifyIndex read just before; a lost race re-reads and re-applies
the change. Everything is validated, and the new release sized, before the first write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from nomadpaas import apps, releases
from nomadpaas.errors import Conflict, InvalidInput
from nomadpaas.models import ConfigVars, Release
from nomadpaas.names import validate_config_key, validate_config_value
from nomadpaas.nomad.variables import MAX_ITEMS_BYTES, CasConflict, items_size
from nomadpaas.store import CAS_ATTEMPTS, VariableStore, backoff, config_path

__all__ = ["describe", "read", "update"]


def read(store: VariableStore, app: str) -> ConfigVars:
    """The app's config vars (empty when none are set); NotFound for a missing app."""
    apps.record(store, app)
    variable = store.get(config_path(app))
    if variable is None:
        return ConfigVars(app=app)
    return ConfigVars(app=app, vars=dict(variable.items), index=variable.modify_index)


def describe(verb: str, keys: Sequence[str]) -> str:
    """Heroku's release description: `Set A, B config vars`, `Unset A config var`."""
    noun = "config var" if len(keys) == 1 else "config vars"
    return f"{verb} {', '.join(keys)} {noun}"


def update(
    store: VariableStore,
    app: str,
    now: datetime,
    set_values: Mapping[str, str] | None = None,
    unset_keys: Sequence[str] = (),
) -> Release:
    """Apply `set_values` and `unset_keys` to the config, then record a release with it."""
    set_values = dict(set_values or {})
    for key, value in set_values.items():
        validate_config_key(key)
        validate_config_value(key, value)
    for key in unset_keys:
        validate_config_key(key)
    if not set_values and not unset_keys:
        raise InvalidInput(
            "No config vars given.", hint="Pass KEY=VALUE pairs (or KEY names to unset)."
        )
    if set_values:
        description = describe("Set", list(set_values))
    else:
        description = describe("Unset", list(dict.fromkeys(unset_keys)))

    apps.record(store, app)
    base = releases.latest(store, app)
    path = config_path(app)
    for attempt in range(CAS_ATTEMPTS):
        backoff(attempt)
        current = store.get(path)
        old = dict(current.items) if current else {}
        new = {**old, **set_values}
        for key in unset_keys:
            new.pop(key, None)
        _check_size(app, new)
        release = Release(
            app=app,
            version=0,  # assigned by releases.create
            description=description,
            created_at=now,
            config=new,
            slug_key=base.slug_key if base else None,
            slug_sha256=base.slug_sha256 if base else None,
            process_types=base.process_types if base else {},
            formation=base.formation if base else {},
            source_digest=base.source_digest if base else None,
        )
        # Sized now, before the write; releases.create re-snapshots the config once it
        # holds its number (see releases.py), which may add concurrent writers' changes.
        releases.check_size(release)
        try:
            if new == old:
                pass  # nothing to write; Heroku still records the release
            elif not new and current is not None:
                store.delete(path, cas=current.modify_index)
            else:
                store.put(path, new, cas=current.modify_index if current else 0)
        except CasConflict:
            continue
        return releases.create(store, release)
    raise Conflict(f"Could not change the config of {app}: too many concurrent writers.")


def _check_size(app: str, values: Mapping[str, str]) -> None:
    size = items_size(values)
    if size > MAX_ITEMS_BYTES:
        raise InvalidInput(
            f"The config of {app} would take {size} bytes; Nomad variables hold at most "
            f"{MAX_ITEMS_BYTES} bytes (64 KiB) of names and values.",
            hint="Keep config vars small: store large files in S3 and put their URL in config.",
        )
