"""The Platform facade: the library API every command (and every Python script) calls.

It never prints and never exits; it returns models and raises `nomadpaas.errors`.

Usage::

    from nomadpaas import Platform

    with Platform() as platform:            # Settings.from_env()
        platform.create_app("demo")
        release = platform.config_set("demo", {"A": "1"})
        print(release.name)                 # v1
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING

from nomadpaas import apps, config, releases
from nomadpaas.errors import NotFound
from nomadpaas.models import App, ConfigVars, Release
from nomadpaas.names import validate_config_key
from nomadpaas.settings import Settings
from nomadpaas.store import config_path

if TYPE_CHECKING:
    from pathlib import Path

    from nomadpaas.build import EventCallback
    from nomadpaas.models import Build, PushResult
    from nomadpaas.nomad.client import NomadClient
    from nomadpaas.storage import Storage
    from nomadpaas.store import VariableStore

__all__ = ["Platform"]


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Platform:
    """Apps, config and releases of one nomadpaas installation.

    Parameters:
        settings: where Nomad is and who we are; `Settings.from_env()` when None.
        client: a ready `NomadClient` (tests pass one on a mock transport); built from
            `settings` when None, and closed by `close()` only in that case.
        clock: returns "now" in UTC; tests pin it.
        storage: the blob store (tests pass a LocalStorage or an S3Storage on the test
            server); `S3Storage.from_settings(settings)` on first use when None.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        client: NomadClient | None = None,
        clock: Callable[[], datetime] = _utc_now,
        storage: Storage | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        self._client = client
        self._owns_client = client is None
        self._store: VariableStore | None = None
        self._clock = clock
        self._storage = storage
        self._owns_storage = storage is None

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Platform:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections this Platform opened (to Nomad and to S3)."""
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None
            self._store = None
        if self._storage is not None and self._owns_storage:
            # Also lets the S3 client (botocore's models: a large object graph) go now,
            # not in the interpreter's teardown, where freeing it costs a CLI command
            # tens of milliseconds more.
            close = getattr(self._storage, "close", None)
            self._storage = None
            if close is not None:
                close()

    @property
    def nomad(self) -> NomadClient:
        """The Nomad HTTP client (created on first use, so building a Platform is cheap)."""
        if self._client is None:
            from nomadpaas.nomad.client import NomadClient

            self._client = NomadClient(
                self.settings.nomad_addr,
                token=self.settings.nomad_token,
                namespace=self.settings.nomad_namespace,
            )
        return self._client

    @property
    def store(self) -> VariableStore:
        """Nomad Variables, where apps, config and releases live."""
        if self._store is None:
            from nomadpaas.nomad.variables import Variables

            self._store = Variables(self.nomad)
        return self._store

    @property
    def storage(self) -> Storage:
        """S3, where sources, slugs, caches and build records live (created on first use)."""
        if self._storage is None:
            from nomadpaas.storage.s3 import S3Storage

            self._storage = S3Storage.from_settings(self.settings)
        return self._storage

    # -- apps --------------------------------------------------------------------------

    def create_app(self, name: str) -> App:
        """Create app `name`: InvalidInput for a bad name, AlreadyExists when taken."""
        return apps.create(self.store, name, self._clock(), self.settings.domain)

    def list_apps(self) -> list[App]:
        """Every app, sorted by name."""
        return apps.list_apps(self.store, self.settings.domain)

    def app_info(self, name: str) -> App:
        """App `name`, or NotFound with the `apps create` hint."""
        return apps.get(self.store, name, self.settings.domain)

    def destroy_app(self, name: str) -> None:
        """Delete the app's releases, config and record. Irreversible."""
        apps.destroy(self.store, name)

    # -- config ------------------------------------------------------------------------

    def config(self, app: str) -> ConfigVars:
        """The app's config vars."""
        return config.read(self.store, app)

    def config_get(self, app: str, key: str) -> str:
        """One config var's value; NotFound when it is not set."""
        validate_config_key(key)
        values = config.read(self.store, app).vars
        if key not in values:
            raise NotFound(
                f"Config var {key} is not set on {app}.",
                hint=f"See the config vars with `nomadpaas config -a {app}`.",
            )
        return values[key]

    def config_set(self, app: str, values: Mapping[str, str]) -> Release:
        """Set config vars (CAS with retry) and record the new release."""
        return config.update(self.store, app, self._clock(), set_values=values)

    def config_unset(self, app: str, keys: Sequence[str]) -> Release:
        """Remove config vars (absent ones are ignored) and record the new release."""
        return config.update(self.store, app, self._clock(), unset_keys=keys)

    # -- releases ----------------------------------------------------------------------

    def releases(self, app: str) -> list[Release]:
        """Every release of the app, newest first."""
        return releases.list_releases(self.store, app)

    def release_info(self, app: str, version: int | str) -> Release:
        """Release `version` (`v3`, `3` or 3); NotFound when there is none."""
        return releases.get(self.store, app, version)

    # -- builds ------------------------------------------------------------------------

    def build(
        self,
        app: str,
        path: str | Path,
        *,
        on_event: EventCallback | None = None,
        timeout: float | None = None,
        detach: bool = False,
        commit: str | None = None,
        build_id: str | None = None,
        config_vars: Mapping[str, str] | None = None,
    ) -> Build:
        """Build the source at `path` into a slug on Nomad (the build half of `push`).

        Packs the source (.gitignore/.slugignore honoured, 500 MB limit), uploads it if
        this content was never uploaded, dispatches the `nomadpaas-build` job with the
        app's config vars and presigned URLs, reports progress and every build output
        line to `on_event` (`nomadpaas.models.BuildEvent`), and returns the `Build`.
        Makes no release. Raises NotFound for an unknown app, InvalidInput for an
        oversized source, BuildFailed (3) with the failing step and log tail, TimedOut
        (5) after `timeout` seconds (the build goes on), NomadUnreachable /
        StorageUnreachable (6). With `detach`, returns right after the dispatch
        (status `pending`). `config_vars`: the app's config vars as the caller has just
        read them, the app known to exist (`push` passes them): neither is read again.
        """
        from nomadpaas.build import run_build

        if config_vars is None:
            apps.get(self.store, app, self.settings.domain)  # NotFound with the create hint
            variable = self.store.get(config_path(app))  # the app is known: read it alone
            config_vars = dict(variable.items) if variable is not None else {}
        return run_build(
            self.nomad,
            self.storage,
            app,
            path,
            on_event=on_event,
            timeout=timeout,
            detach=detach,
            build_id=build_id,
            config=config_vars,
            commit=commit,
        )

    def build_info(self, app: str, build_id: str) -> Build:
        """A finished build from its record `builds/<app>/<build_id>.json` (after a
        `build(..., detach=True)`); NotFound while it has not finished."""
        from nomadpaas.build import read_build

        return read_build(self.storage, app, build_id)

    # -- push --------------------------------------------------------------------------

    def push(
        self,
        app: str,
        path: str | Path,
        *,
        on_event: EventCallback | None = None,
        timeout: float | None = None,
        detach: bool = False,
        force: bool = False,
        commit: str | None = None,
        build_id: str | None = None,
    ) -> PushResult:
        """Build the source at `path` and record it as the app's next release.

        Everything `build` does (same events, same errors), then release v<N> with the
        slug, the process types from the slug metadata, the config snapshot, the source
        digest and the description `Deploy <short sha>` (the git commit of `path` when it
        is in a work tree, else the source digest). A source identical to the latest
        release's is neither built nor released unless `force` (status `unchanged`).
        With `detach` the build is only dispatched and no release is recorded. Raises
        InvalidInput (2) when `path` is not a directory. Deploying the release (the app
        job) is not part of it yet.
        """
        from nomadpaas.push import push

        return push(
            self.store,
            self.build,
            app,
            path,
            self._clock,
            on_event=on_event,
            timeout=timeout,
            detach=detach,
            force=force,
            commit=commit,
            build_id=build_id,
        )
