"""The build pipeline: source dir/tarball + cache dir + config → slug tarball + metadata.

    stage source → .slugignore → Procfile check → select/detect buildpacks → ENV_DIR →
    compile each (sourcing earlier `export`s) → last `bin/release` → merge process types →
    launcher → pack ./app → sha256 → slug.json

Everything is local paths: fetching the source and cache, uploading the slug and cache
(presigned URLs) and the build record wrap `build_slug` from outside (the build task).
Progress goes to a `log` callable line by line in Heroku's style (``-----> `` steps,
7-space details); nothing here prints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping

from nomadpaas.errors import BuildFailed
from nomadpaas.frozen import Frozen, init_fields
from nomadpaas.procfile import Procfile, ProcfileError, is_dns_label, parse_procfile
from nomadpaas.slugbuilder.archive import GZIP_LEVEL, ArchiveError, extract_tarball
from nomadpaas.slugbuilder.bpcopy import copy_buildpacks, snapshot_root
from nomadpaas.slugbuilder.buildpacks import (
    DETECTION_ORDER,
    Buildpack,
    detect,
    detect_first,
    explicit_selection,
    run_phase,
)
from nomadpaas.slugbuilder.launcher import LAUNCHER_RELPATH, write_launcher
from nomadpaas.slugbuilder.release import ReleaseFormatError, ReleaseInfo, parse_release
from nomadpaas.slugbuilder.slugignore import apply_slugignore
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

Log = Callable[[str], None]

# Our "stack": the build machine's own python3 and node; part of every cache key.
DEFAULT_STACK = "nomadpaas-1"
COMPILE_TIMEOUT_S = 15 * 60.0  # Heroku's compile limit
RELEASE_TIMEOUT_S = 60.0
SLUG_SOFT_LIMIT_BYTES = 300 * 1024**2  # Heroku's warning threshold (compressed)
SLUG_HARD_LIMIT_BYTES = 1024**3  # Heroku's 2026 default maximum (compressed)
LOG_TAIL_LINES = 15
#: Under CACHE_DIR, owned by the slug compiler: compressed slug layers kept between builds.
SLUG_LAYERS_CACHE = ".nomadpaas/slug-layers"
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The build task's own variables that buildpacks may see; anything else (credentials,
# presigned URLs) stays out. UV_*/PIP_*/npm_config_* are the operator's installer settings.
# NOMADPAAS_BUILD_CACHE_DIR (the node-local cache, node meta): the python buildpack keeps
# facts about the node's interpreter there, shared by every app's builds on the node.
_PASSTHROUGH = (
    "PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy",
    "https_proxy", "no_proxy", "NOMADPAAS_PYTHON", "NOMADPAAS_NO_UV",
    "NOMADPAAS_BUILD_CACHE_DIR",
)  # fmt: skip
_PASSTHROUGH_PREFIXES = ("UV_", "PIP_", "npm_config_", "NPM_CONFIG_")


def default_buildpacks_dir() -> str:
    """$NOMADPAAS_BUILDPACKS_DIR, else the repository's top-level `buildpacks/`."""
    configured = os.environ.get("NOMADPAAS_BUILDPACKS_DIR")
    if configured:
        return configured
    package_dir = os.path.dirname(os.path.realpath(__file__))  # .../nomadpaas/slugbuilder
    return os.path.join(os.path.dirname(os.path.dirname(package_dir)), "buildpacks")


class BuildRequest(Frozen):
    """Inputs of one build (paths are given as str or path-like, kept as str).

    Parameters:
        source: the app source, a directory or a .tar.gz (entries relative to the app root).
        work_dir: scratch space for this build (created; `app/` in it becomes the slug).
        cache_dir: kept between builds of the same app (may be empty); CACHE_DIR.
        output_dir: receives `slug.tar.gz` and `slug.json`.
        config: the app's config vars, given to buildpacks as ENV_DIR files.
    """

    __match_args__ = (
        "source", "work_dir", "cache_dir", "output_dir", "config", "buildpacks_dir",
        "stack", "commit", "build_id", "compile_timeout_s",
    )  # fmt: skip
    __slots__ = __match_args__
    source: str
    work_dir: str
    cache_dir: str
    output_dir: str
    config: Mapping[str, str]
    buildpacks_dir: str
    stack: str
    commit: str | None
    build_id: str | None
    compile_timeout_s: float

    def __init__(
        self,
        source: str | os.PathLike[str],
        work_dir: str | os.PathLike[str],
        cache_dir: str | os.PathLike[str],
        output_dir: str | os.PathLike[str],
        config: Mapping[str, str] | None = None,
        buildpacks_dir: str | os.PathLike[str] | None = None,
        stack: str = DEFAULT_STACK,
        commit: str | None = None,
        build_id: str | None = None,
        compile_timeout_s: float = COMPILE_TIMEOUT_S,
    ) -> None:
        init_fields(
            self, source=os.fspath(source), work_dir=os.fspath(work_dir),
            cache_dir=os.fspath(cache_dir), output_dir=os.fspath(output_dir),
            config={} if config is None else config,
            buildpacks_dir=(
                default_buildpacks_dir() if buildpacks_dir is None else os.fspath(buildpacks_dir)
            ),
            stack=stack, commit=commit, build_id=build_id, compile_timeout_s=compile_timeout_s,
        )  # fmt: skip


class SlugMetadata(Frozen):
    """What `slug.json` holds next to the slug (and the release record will copy)."""

    __match_args__ = (
        "process_types", "buildpacks", "buildpack_description", "stack", "sha256",
        "compressed_bytes", "uncompressed_bytes", "files", "launcher", "addons", "commit",
        "build_id", "build_seconds", "created_at", "warnings", "format", "md5",
    )  # fmt: skip
    __slots__ = __match_args__
    process_types: dict[str, str]
    buildpacks: list[str]
    buildpack_description: str
    stack: str
    sha256: str
    compressed_bytes: int
    uncompressed_bytes: int
    files: int
    launcher: str
    addons: list[str]
    commit: str | None
    build_id: str | None
    build_seconds: float
    created_at: str
    warnings: list[str]
    format: int
    #: The slug's MD5: the ETag S3 gives its single-part upload, so the platform can
    #: check a server-side copy of it without reading the bytes.
    md5: str

    def __init__(
        self,
        process_types: dict[str, str],
        buildpacks: list[str],
        buildpack_description: str,
        stack: str,
        sha256: str,
        compressed_bytes: int,
        uncompressed_bytes: int,
        files: int,
        launcher: str,
        addons: list[str],
        commit: str | None,
        build_id: str | None,
        build_seconds: float,
        created_at: str,
        warnings: list[str],
        format: int = 1,
        md5: str = "",
    ) -> None:
        init_fields(
            self, process_types=process_types, buildpacks=buildpacks,
            buildpack_description=buildpack_description, stack=stack, sha256=sha256,
            compressed_bytes=compressed_bytes, uncompressed_bytes=uncompressed_bytes,
            files=files, launcher=launcher, addons=addons, commit=commit, build_id=build_id,
            build_seconds=build_seconds, created_at=created_at, warnings=warnings,
            format=format, md5=md5,
        )  # fmt: skip

    def to_dict(self) -> dict[str, object]:
        """The fields in order, containers copied (as ``dataclasses.asdict``)."""
        out: dict[str, object] = {}
        for name in self.__match_args__:
            value = getattr(self, name)
            out[name] = (
                dict(value) if isinstance(value, dict) else
                list(value) if isinstance(value, list) else value
            )  # fmt: skip
        return out


class BuildResult(Frozen):
    __match_args__ = ("slug_path", "metadata_path", "metadata")
    __slots__ = __match_args__
    slug_path: str
    metadata_path: str
    metadata: SlugMetadata

    def __init__(self, slug_path: str, metadata_path: str, metadata: SlugMetadata) -> None:
        init_fields(self, slug_path=slug_path, metadata_path=metadata_path, metadata=metadata)


class CompileFailed(BuildFailed):
    """A buildpack's compile exited non-zero; `log_tail` holds its last output lines."""

    def __init__(self, message: str, log_tail: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.log_tail = log_tail


def build_slug(
    request: BuildRequest, log: Log | None = None, timings: Timings | None = None
) -> BuildResult:
    """Run the whole pipeline; raise BuildFailed (or CompileFailed) saying why.

    The output dir gets `slug.tar.gz` (entries under ``./app/``; run it with
    ``app/.nomadpaas/start <type>`` from any directory) and `slug.json` (SlugMetadata).
    `timings` receives the seconds of each phase (stage_source, detect, compile,
    release, pack_slug).
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
            shutil.rmtree(scratch)
    os.makedirs(request.cache_dir, exist_ok=True)

    with timer.phase("stage_source"):
        _stage_source(request.source, build_dir)
    # What the build needs only from its first compile on is made on a thread while this
    # one reads the source and detects (waiting for the detects, mostly), and joined in
    # `_select`. Not sooner: staging makes inodes too, and both would share the CPUs.
    copies = join(work, "buildpacks")
    preparing = _Prepare(request.buildpacks_dir, copies, request.output_dir, env_dir)
    try:
        ignored = apply_slugignore(build_dir)
        source_epoch_ns = _newest_mtime_ns(build_dir)
        for warning in ignored.warnings:
            _warn(emit, warnings, warning)
        if ignored.removed:
            emit(f"-----> Removed {len(ignored.removed)} path(s) matched by .slugignore or .git")
        procfile = _read_procfile(build_dir, emit, warnings)

        env = _buildpack_env(request, home)
        with timer.phase("detect"):
            selected, description = _select(build_dir, request, copies, env, emit, preparing)
    finally:
        preparing.wait()  # never leave it writing into the work dir (e.g. after a BuildFailed)
    _write_env_dir(env_dir, request.config, emit, warnings)

    # What the build needs once compile is done is imported while it runs (this process
    # only waits for the buildpack's output then), not at the task's start.
    threading.Thread(target=_import_packing, name="nomadpaas-imports", daemon=True).start()
    exports: list[str] = []
    for buildpack in selected:
        args = [build_dir, request.cache_dir, env_dir]
        with timer.phase("compile"):
            code, lines = run_phase(
                buildpack, "compile", args, env=env, exports=exports, log=emit,
                timeout_s=request.compile_timeout_s,
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

    with timer.phase("release"):
        release = _release(selected[-1], build_dir, env, exports)
    procfile = _read_procfile(build_dir, None, [])
    processes = _merge_process_types(procfile, release, selected[-1], emit, warnings)
    _write_config_vars(build_dir, release.config_vars)
    write_launcher(build_dir, processes)

    emit("-----> Compressing...")
    from nomadpaas.slugbuilder.layers import pack_slug

    slug_path = join(request.output_dir, "slug.tar.gz")
    try:
        with timer.phase("pack_slug"):
            stats = pack_slug(
                build_dir, slug_path, level=GZIP_LEVEL,
                layer_cache=join(request.cache_dir, SLUG_LAYERS_CACHE),
                source_epoch_ns=source_epoch_ns,
            )  # fmt: skip
    except ArchiveError as exc:
        raise BuildFailed(f"The slug cannot be packed: {exc}") from exc
    if stats.reused:
        emit(f"       Reused unchanged {', '.join(stats.reused)} from the build cache")
    if stats.compressed_bytes > SLUG_HARD_LIMIT_BYTES:
        raise BuildFailed(
            f"Compiled slug size is {_mb(stats.compressed_bytes)}, over the "
            f"{_mb(SLUG_HARD_LIMIT_BYTES)} limit",
            hint="List build-only files in .slugignore.",
        )
    if stats.compressed_bytes > SLUG_SOFT_LIMIT_BYTES:
        _warn(emit, warnings, f"the slug is over {_mb(SLUG_SOFT_LIMIT_BYTES)}: slower starts")
    emit(f"       Done: {_mb(stats.compressed_bytes)}")
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
        addons=release.addons,
        commit=request.commit,
        build_id=request.build_id,
        build_seconds=round(time.monotonic() - started, 3),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        warnings=warnings,
    )
    metadata_path = join(request.output_dir, "slug.json")
    with open(metadata_path, "w") as f:
        f.write(json.dumps(metadata.to_dict(), indent=2) + "\n")
    emit(f"-----> Compiled slug size is {_mb(stats.compressed_bytes)} (sha256 {stats.sha256[:12]})")
    return BuildResult(slug_path=slug_path, metadata_path=metadata_path, metadata=metadata)


def _import_packing() -> None:
    """Import what packing the slug (and saving the cache) needs: hashlib (OpenSSL's
    start), the gzip member writer and its threads, ~4 ms in all."""
    import nomadpaas.slugbuilder.layers  # noqa: F401


def _stage_source(source: str, build_dir: str) -> None:
    if os.path.isdir(source):
        shutil.copytree(source, build_dir, symlinks=True, ignore=shutil.ignore_patterns(".git"))
        return
    if not os.path.isfile(source):
        raise BuildFailed(f"The source {source} does not exist")
    try:
        extract_tarball(source, build_dir)
    except ArchiveError as exc:
        raise BuildFailed(f"The source tarball was refused: {exc}") from exc


def _newest_mtime_ns(root: str) -> int:
    """The newest mtime of the staged source's files (0 for none): the slug's "source date".

    Files the build writes outside the slug's layers get it as their mtime, so the same
    source packs the same way (a source packed by `nomadpaas push` has mtime 0 throughout).
    """
    newest = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime_ns)
    return newest


def _read_procfile(build_dir: str, emit: Log | None, warnings: list[str]) -> Procfile | None:
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
            _warn(emit, warnings, f"Procfile {problem}")
    return procfile


def _buildpack_env(request: BuildRequest, home: str) -> dict[str, str]:
    os.makedirs(home)
    env = {
        k: v
        for k, v in os.environ.items()
        if k in _PASSTHROUGH or k.startswith(_PASSTHROUGH_PREFIXES)
    }
    # When the project's venv ships uv, put it on PATH for the python buildpack.
    venv_bin = os.path.dirname(sys.executable) or "."
    if os.path.exists(os.path.join(venv_bin, "uv")):
        env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', os.defpath)}"
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    env.update(HOME=home, STACK=request.stack)
    if request.commit:
        env["SOURCE_VERSION"] = request.commit
    if request.build_id:
        env["REQUEST_ID"] = request.build_id
    return env


def _select(
    build_dir: str,
    request: BuildRequest,
    copies: str,
    env: Mapping[str, str],
    emit: Log,
    preparing: _Prepare,
) -> tuple[list[Buildpack], str]:
    """Choose the buildpacks (detection reads `request.buildpacks_dir` as it is: detect
    only reads, by contract), then wait for their copy at `copies` (`preparing`), where
    they run: compile writes `export` files next to bin/, and the installed ones stay
    clean. The selected buildpacks are returned as their copies."""
    original = request.buildpacks_dir
    explicit = explicit_selection(build_dir, request.config, original)
    if explicit is not None:
        chosen, origin = explicit
        names = ", ".join(b.name for b in chosen)
        emit(f"-----> Using buildpack(s) from {origin}: {names}")
        last = chosen[-1]
        description = detect(last, build_dir, env) or last.name
        preparing.join()
        return [Buildpack(b.name, os.path.join(copies, b.name)) for b in chosen], description
    candidates = [
        Buildpack(name=name, path=os.path.join(original, name)) for name in DETECTION_ORDER
    ]
    runnable = [c for c in candidates if os.path.isfile(c.script("detect"))]
    found = detect_first(runnable, build_dir, env)
    preparing.join()
    if found is not None:
        emit(f"-----> {found[1]} app detected")
        return [Buildpack(found[0].name, os.path.join(copies, found[0].name))], found[1]
    raise BuildFailed(
        "No buildpack detected this app (tried " + ", ".join(DETECTION_ORDER) + ")",
        hint="Add a Procfile, requirements.txt, pyproject.toml, package.json or index.html, "
        "or choose a buildpack with BUILDPACK_URL or .buildpacks.",
    )


class _Prepare:
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
        self._thread.join()

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def _write_env_dir(env_dir: str, config: Mapping[str, str], emit: Log, warnings: list[str]) -> None:
    """One file per config var in `env_dir` (made by `_Prepare`)."""
    for name, value in config.items():
        if _ENV_NAME_RE.fullmatch(name) is None:
            _warn(
                emit, warnings, f"config var {name!r} is not a valid name; not given to the build"
            )
            continue
        with open(os.path.join(env_dir, name), "w") as f:
            f.write(value)


def _release(
    buildpack: Buildpack, build_dir: str, env: Mapping[str, str], exports: list[str]
) -> ReleaseInfo:
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


def _merge_process_types(
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
            _warn(emit, warnings, f"process type {name!r} is not a lowercase DNS label")
    if "web" not in processes:
        _warn(emit, warnings, "no web process: this app gets no HTTP traffic")
    return processes


def _write_config_vars(build_dir: str, config_vars: Mapping[str, str]) -> None:
    """Deprecated `config_vars` become a .profile.d script, as herokuish does."""
    if not config_vars:
        return
    profile_d = os.path.join(build_dir, ".profile.d")
    os.makedirs(profile_d, exist_ok=True)
    lines = []
    for name, value in config_vars.items():
        if _ENV_NAME_RE.fullmatch(name):
            quoted = value.replace("'", "'\\''")
            # Defaults only: the user's config var wins.
            lines.append(f"[ -n \"${{{name}+x}}\" ] || export {name}='{quoted}'\n")
    with open(os.path.join(profile_d, "000_config_vars.sh"), "w") as f:
        f.write("".join(lines))


def _warn(emit: Log, warnings: list[str], message: str) -> None:
    warnings.append(message)
    emit(f" !     Warning: {message}")


def _mb(size: int) -> str:
    return f"{size / 1024**2:.1f} MB"
