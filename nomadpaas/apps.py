"""App records: create (create-only CAS), read, list, destroy, and the release counter.

The record `nomadpaas/apps/<app>` holds `name`, `created_at` and `latest_release`, the
highest release number handed out. Releases take their number from it by a CAS bump
(`next_release_number`), so two writers racing never get the same number.
"""

from __future__ import annotations

from datetime import datetime

from nomadpaas.errors import AlreadyExists, Conflict, NotFound
from nomadpaas.models import App, iso, parse_iso
from nomadpaas.names import validate_app_name
from nomadpaas.nomad.variables import CasConflict, Variable
from nomadpaas.store import (
    APPS_PREFIX,
    CAS_ATTEMPTS,
    VariableStore,
    app_path,
    backoff,
)

__all__ = ["create", "destroy", "get", "list_apps", "next_release_number", "record"]


def _from_variable(variable: Variable, domain: str | None) -> App:
    items = variable.items
    name = items.get("name") or variable.path.removeprefix(APPS_PREFIX)
    return App(
        name=name,
        created_at=parse_iso(items.get("created_at")),
        latest_release=int(items.get("latest_release") or 0),
        web_url=f"http://{name}.{domain}" if domain else None,
    )


def not_found(name: str) -> NotFound:
    return NotFound(
        f"App {name} does not exist.", hint=f"Create it with `nomadpaas apps create {name}`."
    )


def create(store: VariableStore, name: str, now: datetime, domain: str | None = None) -> App:
    """Create the app record; AlreadyExists when the name is taken."""
    validate_app_name(name)
    items = {"name": name, "created_at": iso(now), "latest_release": "0"}
    try:
        variable = store.put(app_path(name), items, cas=0)
    except CasConflict:
        raise AlreadyExists(
            f"App {name} already exists.",
            hint="Pick another name, or use the existing app with -a.",
        ) from None
    return _from_variable(variable, domain)


def record(store: VariableStore, name: str) -> Variable:
    """The app's variable; NotFound (with the `apps create` hint) when there is none."""
    validate_app_name(name)
    variable = store.get(app_path(name))
    if variable is None:
        raise not_found(name)
    return variable


def get(store: VariableStore, name: str, domain: str | None = None) -> App:
    return _from_variable(record(store, name), domain)


def list_apps(store: VariableStore, domain: str | None = None) -> list[App]:
    """Every app, sorted by name (records whose path is exactly `nomadpaas/apps/<name>`)."""
    names = [
        meta.path.removeprefix(APPS_PREFIX)
        for meta in store.list(APPS_PREFIX)
        if "/" not in meta.path.removeprefix(APPS_PREFIX)
    ]
    apps = []
    for name in sorted(names):
        variable = store.get(app_path(name))
        if variable is not None:  # destroyed between the list and the read
            apps.append(_from_variable(variable, domain))
    return apps


def destroy(store: VariableStore, name: str) -> None:
    """Delete everything under the app (config, releases), then its record."""
    record(store, name)
    for meta in store.list(f"{app_path(name)}/"):
        store.delete(meta.path)
    store.delete(app_path(name))


def next_release_number(store: VariableStore, name: str) -> int:
    """Bump `latest_release` with CAS and return the new number (retrying lost races)."""
    for attempt in range(CAS_ATTEMPTS):
        backoff(attempt)
        variable = record(store, name)
        number = int(variable.items.get("latest_release") or 0) + 1
        items = {**variable.items, "latest_release": str(number)}
        try:
            store.put(variable.path, items, cas=variable.modify_index)
        except CasConflict:
            continue
        return number
    raise Conflict(f"Could not assign a release number for {name}: too many concurrent writers.")
