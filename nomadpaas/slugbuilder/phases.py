"""Run the selected buildpacks' `bin/compile` in turn, then the last one's `bin/release`.

Each compile sources the `export` files of the buildpacks before it (run_phase,
buildpacks.py). Release's deprecated `config_vars` become a .profile.d script in the
slug, as herokuish does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder.buildenv import ENV_NAME_RE
from nomadpaas.slugbuilder.buildlog import Log
from nomadpaas.slugbuilder.buildpacks import Buildpack, run_phase
from nomadpaas.slugbuilder.models import CompileFailed
from nomadpaas.slugbuilder.timings import Timings

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    from nomadpaas.slugbuilder.release import ReleaseInfo

__all__ = ["compile_all", "run_release", "write_config_vars"]

RELEASE_TIMEOUT_S = 60.0
#: Non-blank output lines of a failed compile kept in CompileFailed (the build record).
LOG_TAIL_LINES = 15


def compile_all(
    selected: list[Buildpack],
    build_dir: str,
    cache_dir: str,
    env_dir: str,
    *,
    env: Mapping[str, str],
    emit: Log,
    timer: Timings,
    timeout_s: float,
) -> list[str]:
    """Run each buildpack's `bin/compile BUILD_DIR CACHE_DIR ENV_DIR` in order; return
    the `export` files they left, for release. A failing compile raises CompileFailed."""
    exports: list[str] = []
    for buildpack in selected:
        args = [build_dir, cache_dir, env_dir]
        with timer.phase("compile"):
            code, lines = run_phase(
                buildpack, "compile", args, env=env, exports=exports, log=emit,
                timeout_s=timeout_s,
            )  # fmt: skip
        if code != 0:
            tail = [line for line in lines if line.strip()][-LOG_TAIL_LINES:]
            raise CompileFailed(
                f"The {buildpack.name} buildpack failed to compile the app (exit code {code})",
                log_tail=tail,
                hint="Read the build output above for the cause, fix the app and push again.",
            )
        if os.path.isfile(buildpack.export_file):
            exports.append(buildpack.export_file)
    return exports


def run_release(
    buildpack: Buildpack, build_dir: str, env: Mapping[str, str], exports: list[str]
) -> ReleaseInfo:
    """What `bin/release` declares (nothing when the buildpack has none)."""
    # Not imported at the task's start: compile.py imports it while the buildpacks compile.
    from nomadpaas.slugbuilder.release import ReleaseFormatError, ReleaseInfo, parse_release

    if not os.path.isfile(buildpack.script("release")):
        return ReleaseInfo()
    code, lines = run_phase(
        buildpack, "release", [build_dir], env=env, exports=exports, log=None,
        timeout_s=RELEASE_TIMEOUT_S,
    )  # fmt: skip
    if code != 0:
        raise BuildFailed(f"bin/release of the {buildpack.name} buildpack exited with {code}")
    try:
        return parse_release("\n".join(lines))
    except ReleaseFormatError as exc:
        raise BuildFailed(
            f"bin/release of the {buildpack.name} buildpack printed unsupported YAML: {exc}"
        ) from exc


def write_config_vars(build_dir: str, config_vars: Mapping[str, str]) -> None:
    """Deprecated `config_vars` become a .profile.d script, as herokuish does."""
    if not config_vars:
        return
    profile_d = os.path.join(build_dir, ".profile.d")
    os.makedirs(profile_d, exist_ok=True)
    lines = []
    for name, value in config_vars.items():
        if ENV_NAME_RE.fullmatch(name):
            quoted = value.replace("'", "'\\''")
            # Defaults only: the user's config var wins.
            lines.append(f"[ -n \"${{{name}+x}}\" ] || export {name}='{quoted}'\n")
    with open(os.path.join(profile_d, "000_config_vars.sh"), "w") as f:
        f.write("".join(lines))
