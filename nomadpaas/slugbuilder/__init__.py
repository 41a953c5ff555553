"""Runs inside the build task: fetch source, run buildpacks, pack and upload the slug.

This package is the local core: `build_slug` turns a source dir/tarball, a cache dir and
the app's config into `slug.tar.gz` + `slug.json` (see compile.py for the pipeline,
launcher.py for the run-side contract inside the slug, buildpacks/README.md for the
buildpack contract). Transfers (presigned S3 URLs) wrap it from outside.

The names below are imported on first use: ``python -m nomadpaas.slugbuilder task``
imports this package first, and the build task's start should not pay for the whole
pipeline before it has begun fetching the source.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    from nomadpaas.slugbuilder.compile import (
        DEFAULT_STACK,
        BuildRequest,
        BuildResult,
        CompileFailed,
        SlugMetadata,
        build_slug,
        default_buildpacks_dir,
    )

__all__ = [
    "DEFAULT_STACK",
    "BuildRequest",
    "BuildResult",
    "CompileFailed",
    "SlugMetadata",
    "build_slug",
    "default_buildpacks_dir",
]


def __getattr__(name: str) -> object:
    if name in __all__:
        from nomadpaas.slugbuilder import compile

        return getattr(compile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
