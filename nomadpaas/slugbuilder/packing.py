"""Pack the compiled app into `slug.tar.gz` (size limits checked) and write `slug.json`.

Imported once the buildpacks compile, not at the build task's start: layers.py brings
hashlib (OpenSSL's start) and the gzip member writer's threads, ~4 ms in all
(compile.py imports this module on a thread while the first compile runs).
"""

from __future__ import annotations

import json
import os

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder.archive import GZIP_LEVEL, ArchiveError
from nomadpaas.slugbuilder.buildlog import Log, warn
from nomadpaas.slugbuilder.layers import SlugPack, pack_slug
from nomadpaas.slugbuilder.models import SlugMetadata
from nomadpaas.slugbuilder.timings import Timings

__all__ = ["SLUG_LAYERS_CACHE", "mb", "pack_app", "write_metadata"]

SLUG_SOFT_LIMIT_BYTES = 300 * 1024**2  # Heroku's warning threshold (compressed)
SLUG_HARD_LIMIT_BYTES = 1024**3  # Heroku's 2026 default maximum (compressed)
#: Under CACHE_DIR, owned by the slug compiler: compressed slug layers kept between builds.
SLUG_LAYERS_CACHE = ".nomadpaas/slug-layers"


def pack_app(
    build_dir: str,
    slug_path: str,
    cache_dir: str,
    source_epoch_ns: int,
    emit: Log,
    warnings: list[str],
    timer: Timings,
) -> SlugPack:
    """Pack `build_dir` as the slug's ``./app/`` (layers reused from `cache_dir`); a slug
    over SLUG_HARD_LIMIT_BYTES compressed fails the build, one over the soft limit warns."""
    emit("-----> Compressing...")
    try:
        with timer.phase("pack_slug"):
            stats = pack_slug(
                build_dir, slug_path, level=GZIP_LEVEL,
                layer_cache=os.path.join(cache_dir, SLUG_LAYERS_CACHE),
                source_epoch_ns=source_epoch_ns,
            )  # fmt: skip
    except ArchiveError as exc:
        raise BuildFailed(f"The slug cannot be packed: {exc}") from exc
    if stats.reused:
        emit(f"       Reused unchanged {', '.join(stats.reused)} from the build cache")
    if stats.compressed_bytes > SLUG_HARD_LIMIT_BYTES:
        raise BuildFailed(
            f"Compiled slug size is {mb(stats.compressed_bytes)}, over the "
            f"{mb(SLUG_HARD_LIMIT_BYTES)} limit",
            hint="List build-only files in .slugignore.",
        )
    if stats.compressed_bytes > SLUG_SOFT_LIMIT_BYTES:
        warn(emit, warnings, f"the slug is over {mb(SLUG_SOFT_LIMIT_BYTES)}: slower starts")
    emit(f"       Done: {mb(stats.compressed_bytes)}")
    return stats


def write_metadata(metadata: SlugMetadata, path: str) -> None:
    """Write `slug.json`: the metadata's fields in order, indented."""
    with open(path, "w") as f:
        f.write(json.dumps(metadata.to_dict(), indent=2) + "\n")


def mb(size: int) -> str:
    """`size` bytes in MB, as the build log shows sizes."""
    return f"{size / 1024**2:.1f} MB"
