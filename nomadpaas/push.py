"""Push = build the source into a slug, then record it as release v<N> (DESIGN.md §4).

    pack → (same source sha256 as the latest release and no `force`? stop: unchanged)
         → `build.run_build` (upload, dispatch `nomadpaas-build`, live log)
         → release v<N>: slug key + sha256, process types from the slug metadata,
           config snapshot, source digest, formation carried over, "Deploy <short sha>"

The deploy half (render and register the app job, follow the deployment) is not built
yet: a push stops at the release, and says so through its result.

The unchanged check needs the source's digest, which only the pack step computes; so
the check listens to the build's own `packed` event and stops the build right there,
before anything is uploaded or dispatched (no second pass over the source).

Independent requests overlap. Before the build, the app's record, its latest release
and its config are each read once (the config once the record is, beside the latest
release, and handed to the build, which reads none again), and the git lookup runs
beside them (no git is started where no repository can be). Once the task prints that
the build succeeded (its result line, before it stores its record: the `built` event),
the release number is taken (`releases.reserve`) while the platform promotes the slug
and the task stores its record, so only the release's own write is left after them.
That config read is the release's snapshot when the number is taken at the record's
index (nobody took one since; else the config is read again after the number:
`releases.reserve`). The build's last cleanup (deleting its staging slug) runs while the
release is written (`build.deferred_cleanup`). Every thread is joined before `push`
returns or raises. A build that fails after printing its result line (its slug fails
the check, or its record cannot be stored) leaves a gap in the release numbers, as a
crash between the two writes would: never a duplicate.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from nomadpaas import apps, releases
from nomadpaas.errors import InvalidInput
from nomadpaas.models import BuildEvent, PushResult, Release
from nomadpaas.names import validate_app_name
from nomadpaas.store import config_path

if TYPE_CHECKING:
    from nomadpaas.build import EventCallback
    from nomadpaas.models import Build
    from nomadpaas.nomad.variables import Variable
    from nomadpaas.store import VariableStore

__all__ = ["BuildFunction", "check_source_dir", "formation_for", "git_commit", "push"]

#: Seconds `git` may take to tell the commit of the pushed directory.
GIT_TIMEOUT_S = 10.0
#: Characters of a commit (or source digest) in a release description, like Heroku's.
SHORT_SHA_CHARS = 7

#: `Platform.build` bound to a Platform: (app, path, on_event, timeout, detach, commit,
#: build_id, config_vars) → Build; `config_vars` are the app's config as push read it
#: (the app known to exist), so the build reads neither again.
BuildFunction = Callable[..., "Build"]


class _SourceUnchanged(Exception):
    """Raised from the `packed` event handler to stop a build of an unchanged source."""

    def __init__(self, sha256: str) -> None:
        super().__init__(sha256)
        self.sha256 = sha256


def check_source_dir(path: str | Path) -> Path:
    """`path` as a Path, or InvalidInput (exit 2) when it is missing or not a directory."""
    source = Path(path)
    if not source.exists():
        raise InvalidInput(
            f"{source} does not exist.",
            hint="Pass the app's directory: `nomadpaas push PATH -a APP` (default: `.`).",
        )
    if not source.is_dir():
        raise InvalidInput(
            f"{source} is not a directory.",
            hint="Push the app's root directory (where its Procfile or requirements.txt is).",
        )
    return source


def git_commit(path: Path) -> str | None:
    """The HEAD commit of the git work tree at `path` (`-dirty` when it has changes), or
    None when `path` is not in one or git is missing. Only labels the release.

    No git is started for a directory that no repository can hold (the usual case of a
    scratch copy): spawning git only to hear "not a git repository" costs milliseconds.
    In a work tree, one `git status --porcelain=v2 --branch` tells both the commit and
    whether the tree has changes."""
    if not _may_be_in_repository(path):
        return None
    try:
        status = _git(path, "status", "--porcelain=v2", "--branch", "--", ".")
        if status.returncode != 0:
            # Not a work tree (a bare repository, say): HEAD may still name a commit.
            head = _git(path, "rev-parse", "HEAD")
            commit = head.stdout.strip() if head.returncode == 0 else ""
            return commit or None
    except (OSError, subprocess.SubprocessError):
        return None
    commit = ""
    dirty = False
    for line in status.stdout.splitlines():
        if line.startswith("# branch.oid "):
            commit = line.removeprefix("# branch.oid ").strip()
        elif line and not line.startswith("#"):
            dirty = True
    if not commit or commit == "(initial)":  # no commit yet
        return None
    return f"{commit}-dirty" if dirty else commit


def _git(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(path), *args],
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_S,
        check=False,
    )


def _may_be_in_repository(path: Path) -> bool:
    """False only when git would surely find no repository for `path`: no GIT_DIR or
    GIT_WORK_TREE in the environment and no `.git` (nor a bare repository's HEAD,
    objects/ and refs/) in `path` or any directory above it, as git's own discovery
    looks."""
    if os.environ.get("GIT_DIR") or os.environ.get("GIT_WORK_TREE"):
        return True
    try:
        here = path.resolve()
    except OSError:
        return True
    for directory in (here, *here.parents):
        if os.path.lexists(directory / ".git"):
            return True
        if (
            os.path.isfile(directory / "HEAD")
            and os.path.isdir(directory / "objects")
            and os.path.isdir(directory / "refs")
        ):
            return True
    return False


def formation_for(
    process_types: Mapping[str, str], previous: Mapping[str, int] | None
) -> dict[str, int]:
    """Instance counts for a new slug, Heroku's way: a type the previous release had
    keeps its count; a new `web` starts at 1, any other new type at 0 (scale it up);
    types the slug no longer has are dropped."""
    before = previous or {}
    return {name: before.get(name, 1 if name == "web" else 0) for name in sorted(process_types)}


def describe(commit: str | None, source_sha256: str) -> str:
    """`Deploy 1a2b3c4` (the commit when known, else the source digest)."""
    label = commit or source_sha256
    suffix = "-dirty" if label.endswith("-dirty") else ""
    return f"Deploy {label[:SHORT_SHA_CHARS]}{suffix}"


def push(
    store: VariableStore,
    build: BuildFunction,
    app: str,
    path: str | Path,
    now: Callable[[], datetime],
    *,
    on_event: EventCallback | None = None,
    timeout: float | None = None,
    detach: bool = False,
    force: bool = False,
    commit: str | None = None,
    build_id: str | None = None,
) -> PushResult:
    """Build `path` for `app` and record the release; see the module docstring.

    `build` is `Platform.build` (it checks the app exists before packing). Returns a
    `PushResult` with status `released`, `unchanged` (the latest release was built from
    the same source and `force` is off: no build, no release) or `dispatched` (`detach`:
    the build goes on, no release is recorded). Raises what `Platform.build` raises.
    """
    from nomadpaas.build import SUCCEEDED_LINE, deferred_cleanup

    source = check_source_dir(path)
    validate_app_name(app)  # before its name goes into a request path
    with (
        deferred_cleanup(),
        ThreadPoolExecutor(max_workers=2, thread_name_prefix="nomadpaas-push") as pool,
    ):
        # The git lookup overlaps the app record's read; the config is read once the
        # record is (beside the latest release's read, which needs the record), so that
        # read can be the release's snapshot if nobody takes a number before this push
        # does (`releases.reserve(config_read=)`); the build gets the config as read
        # here, so the app's records are read once per push.
        looked_up = None
        if commit is None and _may_be_in_repository(source):  # else no commit to find
            looked_up = pool.submit(git_commit, source)
        record = apps.record(store, app)  # kept: the release number is taken at its index
        config_read = pool.submit(store.get, config_path(app))
        latest = releases.latest(store, app, record)
        config_var = config_read.result()
        config_vars = dict(config_var.items) if config_var is not None else {}
        if looked_up is not None:
            commit = looked_up.result()
        early: list[Future[releases.Reservation]] = []

        def reserve_early(event: BuildEvent) -> None:
            # On the task's result line (`built`), or else (an older task) its DONE line.
            succeeded = event.kind == "log" and event.message == SUCCEEDED_LINE
            if (event.kind == "built" or succeeded) and not early:
                early.append(
                    pool.submit(
                        releases.reserve, store, app, app_record=record, config_read=config_vars
                    )
                )

        return _push(store, build, app, source, now, record, latest, early, reserve_early,
                     on_event=on_event, timeout=timeout, detach=detach, force=force,
                     commit=commit, build_id=build_id, config_vars=config_vars)  # fmt: skip


def _push(
    store: VariableStore,
    build: BuildFunction,
    app: str,
    source: Path,
    now: Callable[[], datetime],
    record: Variable,
    latest: Release | None,
    early: list[Future[releases.Reservation]],
    watch: Callable[[BuildEvent], None],
    *,
    on_event: EventCallback | None,
    timeout: float | None,
    detach: bool,
    force: bool,
    commit: str | None,
    build_id: str | None,
    config_vars: Mapping[str, str],
) -> PushResult:
    skip_digest = None if force or latest is None or not latest.slug_key else latest.source_digest

    def relay(event: BuildEvent) -> None:
        if on_event is not None:
            on_event(event)
        if not detach:
            watch(event)
        if event.kind == "packed" and skip_digest and event.data.get("sha256") == skip_digest:
            raise _SourceUnchanged(skip_digest)

    try:
        built = build(
            app,
            source,
            on_event=relay,
            timeout=timeout,
            detach=detach,
            commit=commit,
            build_id=build_id,
            config_vars=config_vars,
        )
    except _SourceUnchanged as unchanged:
        assert latest is not None  # skip_digest came from it
        if on_event is not None:
            on_event(
                BuildEvent(
                    "unchanged",
                    f"Source identical to {latest.name}'s (sha256 "
                    f"{unchanged.sha256[:12]}): no build, no new release",
                    {"release": latest.name, "sha256": unchanged.sha256},
                )
            )
        return PushResult(app, "unchanged", unchanged.sha256, release=latest)

    if detach:
        return PushResult(app, "dispatched", built.source_sha256, build=built)

    release = releases.create(
        store,
        Release(
            app=app,
            version=0,  # assigned by releases.create
            description=describe(commit, built.source_sha256),
            created_at=now(),
            slug_key=built.slug_key,
            slug_sha256=built.slug_sha256,
            process_types=dict(built.process_types),
            formation=formation_for(built.process_types, latest.formation if latest else None),
            source_digest=built.source_sha256,
        ),
        snapshot_config=True,
        app_record=None if early else record,  # a reservation has used it
        reserved=early[0].result() if early else None,
    )
    if on_event is not None:
        on_event(
            BuildEvent(
                "released",
                f"Released {release.name}",
                {"release": release.name, "version": release.version},
            )
        )
    return PushResult(app, "released", built.source_sha256, build=built, release=release)
