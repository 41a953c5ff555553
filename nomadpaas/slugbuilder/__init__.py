"""Runs inside the build task: fetch source, run buildpacks, pack and upload the slug.

This package is the local core: `build_slug` turns a source dir/tarball, a cache dir and
the app's config into `slug.tar.gz` + `slug.json` (see compile.py for the pipeline,
launcher.py for the run-side contract inside the slug, buildpacks/README.md for the
buildpack contract). Transfers (presigned S3 URLs) wrap it from outside.
"""

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
