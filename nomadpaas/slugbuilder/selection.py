"""Choose the build's buildpacks while a thread prepares the copies they will run from.

The thread (`Prepare`) starts once the source is staged and works while this one reads
the source and runs the detects (which mostly wait); `select_buildpacks` joins it.
The selection rules are buildpacks.py's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder.bpcopy import copy_buildpacks, snapshot_root
from nomadpaas.slugbuilder.buildlog import Log
from nomadpaas.slugbuilder.buildpacks import (
    DETECTION_ORDER,
    Buildpack,
    detect,
    detect_first,
    explicit_selection,
)
from nomadpaas.slugbuilder.models import BuildRequest

__all__ = ["Prepare", "select_buildpacks"]


class Prepare:
    """On a thread: make the output dir, ENV_DIR (empty, mode 0700) and the build's copy
    of the buildpacks dir (bpcopy.py). Mostly system calls, which release the GIL; making
    inodes is what costs (see bpcopy.py). `join` waits and raises what it raised."""

    def __init__(self, buildpacks_dir: str, copies: str, output_dir: str, env_dir: str) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run,
            args=(buildpacks_dir, copies, output_dir, env_dir),
            name="nomadpaas-prepare",
            daemon=True,
        )
        self._thread.start()

    def _run(self, buildpacks_dir: str, copies: str, output_dir: str, env_dir: str) -> None:
        try:
            os.makedirs(output_dir, exist_ok=True)
            os.mkdir(env_dir, 0o700)  # config vars are often secrets
            os.chmod(env_dir, 0o700)  # exactly (mkdir's mode is umasked)
            copy_buildpacks(buildpacks_dir, copies, snapshot_root(os.environ))
        except BaseException as exc:  # handed to whoever joins
            self._error = exc

    def wait(self) -> None:
        """Wait for the thread, whatever it did (its error stays for `join`)."""
        self._thread.join()

    def join(self) -> None:
        """Wait for the thread and raise what it raised."""
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def select_buildpacks(
    build_dir: str,
    request: BuildRequest,
    copies: str,
    env: Mapping[str, str],
    emit: Log,
    preparing: Prepare,
    meanwhile: Callable[[], object] | None = None,
) -> tuple[list[Buildpack], str]:
    """Choose the buildpacks (detection reads `request.buildpacks_dir` as it is: detect
    only reads, by contract), then wait for their copy at `copies` (`preparing`), where
    they run: compile writes `export` files next to bin/, and the installed ones stay
    clean. The selected buildpacks are returned as their copies, with the description
    of the app (what the last one's detect printed). `meanwhile` runs once, while
    the (first) detect runs (`detect_first`), or before it for an explicit choice."""
    original = request.buildpacks_dir
    explicit = explicit_selection(build_dir, request.config, original)
    if explicit is not None:
        chosen, origin = explicit
        names = ", ".join(b.name for b in chosen)
        emit(f"-----> Using buildpack(s) from {origin}: {names}")
        last = chosen[-1]
        if meanwhile is not None:
            meanwhile()
        description = detect(last, build_dir, env) or last.name
        preparing.join()
        return [Buildpack(b.name, os.path.join(copies, b.name)) for b in chosen], description
    candidates = [
        Buildpack(name=name, path=os.path.join(original, name)) for name in DETECTION_ORDER
    ]
    runnable = [c for c in candidates if os.path.isfile(c.script("detect"))]
    found = detect_first(runnable, build_dir, env, meanwhile)
    preparing.join()
    if found is not None:
        emit(f"-----> {found[1]} app detected")
        return [Buildpack(found[0].name, os.path.join(copies, found[0].name))], found[1]
    raise BuildFailed(
        "No buildpack detected this app (tried " + ", ".join(DETECTION_ORDER) + ")",
        hint="Add a Procfile, requirements.txt, pyproject.toml, package.json or index.html, "
        "or choose a buildpack with BUILDPACK_URL or .buildpacks.",
    )
