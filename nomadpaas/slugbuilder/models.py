"""The inputs and outputs of one build: BuildRequest in; BuildResult and SlugMetadata out.

SlugMetadata is what `slug.json` holds (and the release record copies); CompileFailed is
the error a failing `bin/compile` raises, with the last lines of its output.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from nomadpaas.errors import BuildFailed
from nomadpaas.frozen import Frozen, init_fields

__all__ = [
    "COMPILE_TIMEOUT_S",
    "DEFAULT_STACK",
    "BuildRequest",
    "BuildResult",
    "CompileFailed",
    "SlugMetadata",
    "default_buildpacks_dir",
]

# Our "stack": the build machine's own python3 and node; part of every cache key.
DEFAULT_STACK = "nomadpaas-1"
COMPILE_TIMEOUT_S = 15 * 60.0  # Heroku's compile limit


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
    """Where the build left `slug.tar.gz` and `slug.json`, and what the latter holds."""

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
