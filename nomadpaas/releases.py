"""The release ledger v1..vN: encode/decode release variables, create, list, read.

A release is written once at `nomadpaas/apps/<app>/releases/v<N>` with `cas=0` after N
came from a CAS bump of the app record (`apps.next_release_number`), so N is never reused
even when writers race; a crash between the two writes leaves a gap, never a duplicate.
Items values must be strings: structured fields are JSON-encoded.

The config snapshot is read *after* N is taken. Config writes are CAS-serialised and each
writer takes its number after its write, so the newest release's snapshot contains every
config write whose writer already holds a number: two `config set`s racing cannot leave
the newest release running the older config.

One read can serve instead (`reserve(config_read=...)`): the config as read *after* the
app record the number is then taken at. If that CAS bump wins, nobody took a number
between the record's read and the bump, so every writer holding a lower number took it
before the record was read, after its config write: that read already saw the write.
If the bump loses, the number is taken the usual way and the config read after it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from nomadpaas import apps
from nomadpaas.errors import Conflict, InvalidInput, NotFound
from nomadpaas.models import Release, iso, parse_iso
from nomadpaas.names import parse_version
from nomadpaas.nomad.variables import MAX_ITEMS_BYTES, CasConflict, Variable, items_size
from nomadpaas.store import (
    CAS_ATTEMPTS,
    VariableStore,
    config_path,
    release_path,
    releases_prefix,
)

__all__ = [
    "Reservation",
    "check_size",
    "create",
    "decode",
    "encode",
    "get",
    "latest",
    "list_releases",
    "reserve",
]

#: Widest number `encode` may have to hold, used when sizing a release before N is known.
_WIDEST_VERSION = 10**12


def encode(release: Release) -> dict[str, str]:
    """Release → Items (strings only; optional fields left out when None)."""
    items = {
        "version": str(release.version),
        "description": release.description,
        "created_at": iso(release.created_at),
        "status": release.status,
        "config": json.dumps(dict(release.config), sort_keys=True),
        "process_types": json.dumps(dict(release.process_types), sort_keys=True),
        "formation": json.dumps(dict(release.formation), sort_keys=True),
    }
    for key, value in (
        ("slug_key", release.slug_key),
        ("slug_sha256", release.slug_sha256),
        ("source_digest", release.source_digest),
    ):
        if value is not None:
            items[key] = value
    return items


def decode(app: str, variable: Variable) -> Release:
    """Items → Release; tolerant of missing optional fields."""
    items = variable.items
    return Release(
        app=app,
        version=int(items.get("version") or variable.path.rsplit("/v", 1)[-1]),
        description=items.get("description", ""),
        created_at=parse_iso(items.get("created_at")),
        status=items.get("status", "succeeded"),
        config=_json_map(items.get("config")),
        slug_key=items.get("slug_key"),
        slug_sha256=items.get("slug_sha256"),
        process_types=_json_map(items.get("process_types")),
        formation={k: int(v) for k, v in _json_map(items.get("formation")).items()},
        source_digest=items.get("source_digest"),
    )


def check_size(release: Release) -> None:
    """InvalidInput when the release would not fit in one Nomad variable (64 KiB)."""
    size = items_size(encode(replace(release, version=_WIDEST_VERSION)))
    if size > MAX_ITEMS_BYTES:
        raise InvalidInput(
            f"Release of {release.app} would take {size} bytes; Nomad variables hold at most "
            f"{MAX_ITEMS_BYTES} bytes (64 KiB).",
            hint="Keep config vars small: store large files in S3 and put their URL in config.",
        )


@dataclass(frozen=True)
class Reservation:
    """A release number taken (the app's counter bumped) and, when snapshotting, the
    app's config as it was right after: everything `create` needs but the final write."""

    app: str
    number: int
    config: dict[str, str] | None


def reserve(
    store: VariableStore,
    app: str,
    *,
    snapshot_config: bool = True,
    app_record: Variable | None = None,
    config_read: Mapping[str, str] | None = None,
) -> Reservation:
    """Take the next release number for `app` (and snapshot its config after that).

    The first half of `create`, for a caller that can start it early (push takes the
    number while the build's slug is being promoted). A reservation never written leaves
    a gap in the numbers, as a crash between the two writes would; never a duplicate.
    `config_read`: the app's config as the caller read it once `app_record` had been
    read (never before or beside that read): the snapshot, without a read, when the
    number is taken at `app_record`'s index (see the module docstring).
    """
    number, at_record = _take_number(store, app, app_record)
    config = None
    if snapshot_config:
        if at_record and config_read is not None:
            config = dict(config_read)
        else:
            current = store.get(config_path(app))
            config = dict(current.items) if current else {}
    return Reservation(app, number, config)


def create(
    store: VariableStore,
    release: Release,
    snapshot_config: bool = True,
    *,
    app_record: Variable | None = None,
    reserved: Reservation | None = None,
) -> Release:
    """Record `release` under the next free number; its own `version` is ignored.

    With `snapshot_config` (the default) its `config` is replaced by the app's config as
    it is once the number is taken; pass False to keep the given config (a rollback).
    `app_record`: the app's record as the caller read it earlier (`apps.record`); the
    number is then first taken with a CAS write at its index, saving a read (if the
    record changed since, that write loses and the number is taken the usual way).
    `reserved`: a `reserve` made earlier for this app with the same `snapshot_config`,
    used for the first attempt.
    """
    check_size(release)
    if reserved is not None and (
        reserved.app != release.app or (reserved.config is not None) != snapshot_config
    ):
        raise ValueError(f"{reserved} was not reserved for this release of {release.app}")
    known = app_record
    for _ in range(CAS_ATTEMPTS):
        taken = reserved or reserve(
            store, release.app, snapshot_config=snapshot_config, app_record=known
        )
        reserved = known = None
        numbered = replace(release, version=taken.number)
        if taken.config is not None:
            numbered = replace(numbered, config=taken.config)
            check_size(numbered)
        try:
            store.put(release_path(release.app, taken.number), encode(numbered), cas=0)
        except CasConflict:
            # v<N> exists though the counter said otherwise (a record restored by hand):
            # skip the number rather than overwrite an immutable release.
            continue
        return numbered
    raise Conflict(f"Could not record a release for {release.app}: too many concurrent writers.")


def _take_number(store: VariableStore, app: str, known: Variable | None) -> tuple[int, bool]:
    """`apps.next_release_number`, trying a CAS bump of `known` (read earlier) first;
    with whether that bump won (the record unchanged since `known` was read)."""
    if known is not None:
        number = int(known.items.get("latest_release") or 0) + 1
        items = {**known.items, "latest_release": str(number)}
        try:
            store.put(known.path, items, cas=known.modify_index)
        except CasConflict:
            pass  # changed since it was read: take the number the usual way
        else:
            return number, True
    return apps.next_release_number(store, app), False


def list_releases(store: VariableStore, app: str) -> list[Release]:
    """Every release of `app`, newest first."""
    apps.record(store, app)
    releases = []
    for meta in store.list(releases_prefix(app)):
        variable = store.get(meta.path)
        if variable is not None:
            releases.append(decode(app, variable))
    return sorted(releases, key=lambda r: r.version, reverse=True)


def get(store: VariableStore, app: str, version: int | str) -> Release:
    """Release `version` (`v3`, `3` or 3) of `app`, or NotFound."""
    number = parse_version(version)
    apps.record(store, app)
    variable = store.get(release_path(app, number))
    if variable is None:
        raise NotFound(
            f"Release v{number} of {app} does not exist.",
            hint=f"List the releases with `nomadpaas releases -a {app}`.",
        )
    return decode(app, variable)


def latest(store: VariableStore, app: str, record: Variable | None = None) -> Release | None:
    """The newest release, or None before the first one (`record`: the app's record,
    when the caller has just read it)."""
    if record is None:
        record = apps.record(store, app)
    number = int(record.items.get("latest_release") or 0)
    if number == 0:
        return None
    # Fast path: the counter's number; it may be a gap (a writer died after the bump).
    variable = store.get(release_path(app, number))
    if variable is not None:
        return decode(app, variable)
    found = list_releases(store, app)
    return found[0] if found else None


def _json_map(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    decoded = json.loads(value)
    return decoded if isinstance(decoded, dict) else {}
