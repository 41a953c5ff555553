"""The slug's process types: the app's Procfile, then the last buildpack's defaults.

The Procfile is read twice: before detection (a broken one fails the build before any
buildpack runs; its warnings are shown then) and after compile (a buildpack may write it).
"""

from __future__ import annotations

import os

from nomadpaas.errors import BuildFailed
from nomadpaas.procfile import Procfile, ProcfileError, is_dns_label, parse_procfile
from nomadpaas.slugbuilder.buildlog import Log, warn
from nomadpaas.slugbuilder.buildpacks import Buildpack

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    from nomadpaas.slugbuilder.release import ReleaseInfo

__all__ = ["merge_process_types", "read_procfile"]


def read_procfile(build_dir: str, emit: Log | None, warnings: list[str]) -> Procfile | None:
    """The app's Procfile, None without one; its warnings go to `emit` when given."""
    path = os.path.join(build_dir, "Procfile")
    if not os.path.isfile(path):
        return None
    with open(path, errors="replace") as f:
        text = f.read()
    try:
        procfile = parse_procfile(text)
    except ProcfileError as exc:
        raise BuildFailed(exc.message, hint=exc.hint) from exc
    if emit is not None:
        for problem in procfile.warnings:
            warn(emit, warnings, f"Procfile {problem}")
    return procfile


def merge_process_types(
    procfile: Procfile | None,
    release: ReleaseInfo,
    buildpack: Buildpack,
    emit: Log,
    warnings: list[str],
) -> dict[str, str]:
    """Procfile entries win; the last buildpack's defaults fill in the other types."""
    processes = dict(procfile.processes) if procfile else {}
    defaults = {k: v for k, v in release.default_process_types.items() if k not in processes}
    processes.update(defaults)
    emit("-----> Discovering process types")
    if procfile:
        emit(f"       Procfile declares types     -> {', '.join(procfile.processes) or '(none)'}")
    if defaults:
        emit(f"       Default types for buildpack -> {', '.join(defaults)}")
    if not processes:
        raise BuildFailed(
            f"No process types: there is no Procfile and the {buildpack.name} buildpack "
            "declares no default web process",
            hint="Add a Procfile with a `web:` line, e.g. `web: gunicorn app:app`.",
        )
    for name, command in processes.items():
        if not command.strip() or "\n" in command or ":" in name:
            raise BuildFailed(f"Process type {name!r} from the buildpack is invalid")
        if not is_dns_label(name) and name in defaults:
            warn(emit, warnings, f"process type {name!r} is not a lowercase DNS label")
    if "web" not in processes:
        warn(emit, warnings, "no web process: this app gets no HTTP traffic")
    return processes
