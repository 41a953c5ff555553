"""The build pipeline: source dir/tarball + cache dir + config → slug tarball + metadata.

    stage source (source.py) → .slugignore → Procfile check (processes.py) →
    select/detect buildpacks while a thread copies them (selection.py) → ENV_DIR
    (buildenv.py) → compile each, sourcing earlier `export`s, then the last one's
    `bin/release` (phases.py) → merge process types (processes.py) → launcher →
    pack ./app, sha256 → slug.json (packing.py)

Everything is local paths: fetching the source and cache, uploading the slug and cache
(presigned URLs) and the build record wrap `build_slug` from outside (the build task).
Progress goes to a `log` callable line by line in Heroku's style (``-----> `` steps,
7-space details); nothing here prints. The build's types (BuildRequest, BuildResult,
SlugMetadata, CompileFailed) live in models.py and are importable from here as well.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from nomadpaas.slugbuilder.buildenv import buildpack_env, write_env_dir
from nomadpaas.slugbuilder.buildlog import Log, warn
from nomadpaas.slugbuilder.models import (
    DEFAULT_STACK,
    BuildRequest,
    BuildResult,
    CompileFailed,
    SlugMetadata,
    default_buildpacks_dir,
)
from nomadpaas.slugbuilder.phases import compile_all, run_release, write_config_vars
from nomadpaas.slugbuilder.processes import merge_process_types, read_procfile
from nomadpaas.slugbuilder.selection import Prepare, select_buildpacks
from nomadpaas.slugbuilder.slugignore import apply_slugignore
from nomadpaas.slugbuilder.source import newest_mtime_ns, stage_source
from nomadpaas.slugbuilder.timings import Timings

__all__ = [
    "DEFAULT_STACK",
    "BuildRequest",
    "BuildResult",
    "CompileFailed",
    "SlugMetadata",
    "build_slug",
    "default_buildpacks_dir",
]


def build_slug(
    request: BuildRequest,
    log: Log | None = None,
    timings: Timings | None = None,
    *,
    meanwhile: Callable[[], object] | None = None,
) -> BuildResult:
    """Run the whole pipeline; raise BuildFailed (or CompileFailed) saying why.

    The output dir gets `slug.tar.gz` (entries under ``./app/``; run it with
    ``app/.nomadpaas/start <type>`` from any directory) and `slug.json` (SlugMetadata).
    `timings` receives the seconds of each phase (stage_source, detect, compile,
    release, pack_slug). `meanwhile`: the caller's work, run once on this thread while
    the first `bin/detect` runs; it has always run before any buildpack compiles (a
    build that fails sooner may end without it).
    """
    emit: Log = log or (lambda _line: None)
    timer = timings or Timings()
    started = time.monotonic()
    warnings: list[str] = []
    work = request.work_dir
    os.makedirs(work, exist_ok=True)
    join = os.path.join
    build_dir, env_dir, home = join(work, "app"), join(work, "env"), join(work, "home")
    for scratch in (build_dir, env_dir, home, join(work, "buildpacks")):
        if os.path.exists(scratch):
            import shutil  # not at import: the build task's work dir is new

            shutil.rmtree(scratch)
    os.makedirs(request.cache_dir, exist_ok=True)

    with timer.phase("stage_source"):
        stage_source(request.source, build_dir)
    # What the build needs only from its first compile on is made on a thread while this
    # one reads the source and detects (waiting for the detects, mostly), and joined in
    # `select_buildpacks`. Not sooner: staging makes inodes too, and both would share the CPUs.
    copies = join(work, "buildpacks")
    preparing = Prepare(request.buildpacks_dir, copies, request.output_dir, env_dir)
    try:
        ignored = apply_slugignore(build_dir)
        source_epoch_ns = newest_mtime_ns(build_dir)
        for warning in ignored.warnings:
            warn(emit, warnings, warning)
        if ignored.removed:
            emit(f"-----> Removed {len(ignored.removed)} path(s) matched by .slugignore or .git")
        read_procfile(build_dir, emit, warnings)

        env = buildpack_env(request, home)
        with timer.phase("detect"):
            selected, description = select_buildpacks(
                build_dir, request, copies, env, emit, preparing, meanwhile
            )
    finally:
        preparing.wait()  # never leave it writing into the work dir (e.g. after a BuildFailed)
    write_env_dir(env_dir, request.config, emit, warnings)

    # What the build needs once compile is done is imported while it runs (this process
    # only waits for the buildpack's output then), not at the task's start: release.py
    # (for phases.run_release), launcher.py and packing.py.
    threading.Thread(target=_import_after_compile, name="nomadpaas-imports", daemon=True).start()
    exports = compile_all(
        selected, build_dir, request.cache_dir, env_dir,
        env=env, emit=emit, timer=timer, timeout_s=request.compile_timeout_s,
    )  # fmt: skip

    # Imported by now (or being imported) on the thread started above.
    from nomadpaas.slugbuilder.launcher import LAUNCHER_RELPATH, write_launcher
    from nomadpaas.slugbuilder.packing import mb, pack_app, write_metadata

    with timer.phase("release"):
        released = run_release(selected[-1], build_dir, env, exports)
    procfile = read_procfile(build_dir, None, [])
    processes = merge_process_types(procfile, released, selected[-1], emit, warnings)
    write_config_vars(build_dir, released.config_vars)
    write_launcher(build_dir, processes)

    slug_path = join(request.output_dir, "slug.tar.gz")
    stats = pack_app(
        build_dir, slug_path, request.cache_dir, source_epoch_ns, emit, warnings, timer
    )
    metadata = SlugMetadata(
        process_types=processes,
        buildpacks=[b.name for b in selected],
        buildpack_description=description,
        stack=request.stack,
        sha256=stats.sha256,
        md5=stats.md5,
        compressed_bytes=stats.compressed_bytes,
        uncompressed_bytes=stats.uncompressed_bytes,
        files=stats.files,
        launcher=f"app/{LAUNCHER_RELPATH}",
        addons=released.addons,
        commit=request.commit,
        build_id=request.build_id,
        build_seconds=round(time.monotonic() - started, 3),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        warnings=warnings,
    )
    metadata_path = join(request.output_dir, "slug.json")
    write_metadata(metadata, metadata_path)
    emit(f"-----> Compiled slug size is {mb(stats.compressed_bytes)} (sha256 {stats.sha256[:12]})")
    return BuildResult(slug_path=slug_path, metadata_path=metadata_path, metadata=metadata)


def _import_after_compile() -> None:
    """Import what the build needs once compile is done: bin/release's parser, the
    launcher and packing (hashlib: OpenSSL's start, the gzip member writer and its
    threads), ~5 ms in all."""
    import nomadpaas.slugbuilder.launcher
    import nomadpaas.slugbuilder.packing
    import nomadpaas.slugbuilder.release  # noqa: F401
