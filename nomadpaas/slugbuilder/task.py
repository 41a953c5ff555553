"""The build task around `build_slug`: fetch source and cache, build, store slug and cache.

This is the seam for the build job: every remote object is a URL handed in by the
dispatcher (presigned S3 URLs in the real job; ``file://`` URLs in tests), moved by a
`Transfer`. Nothing here knows S3, credentials or Nomad.

    source_url ─fetch─▶ source.tar.gz ─┐
    cache_url  ─fetch─▶ cache.tar.gz ──┼▶ build_slug ▶ slug.tar.gz ─store─▶ slug_url
                                       │              slug.json   ─store─▶ metadata_url
                                       └─ CACHE_DIR ─pack─▶ cache.tar.gz ─store─▶ cache_put_url

A missing or unreadable cache is a cache miss, never a failure; the cache is saved only
after a successful build (Heroku's rule), so a broken build cannot poison the next one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder.archive import ArchiveError, extract_tarball, pack_directory
from nomadpaas.slugbuilder.compile import (
    DEFAULT_STACK,
    BuildRequest,
    SlugMetadata,
    build_slug,
    default_buildpacks_dir,
)

__all__ = ["BuildTask", "FileTransfer", "Transfer", "run_build_task"]

Log = Callable[[str], None]


class Transfer(Protocol):
    """Moves whole objects between URLs and local files."""

    def fetch(self, url: str, dest: Path) -> bool:
        """Download `url` to `dest`; False when the object does not exist."""
        ...

    def store(self, path: Path, url: str) -> None:
        """Upload the file at `path` to `url` (replacing it)."""
        ...


class FileTransfer:
    """A Transfer for ``file://`` URLs (tests, and a shared filesystem)."""

    def fetch(self, url: str, dest: Path) -> bool:
        source = _file_path(url)
        if not source.is_file():
            return False
        shutil.copyfile(source, dest)
        return True

    def store(self, path: Path, url: str) -> None:
        target = _file_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(path, partial)
        partial.replace(target)  # readers never see a half-written object


def _file_path(url: str) -> Path:
    parsed = urlparse(url)
    if parsed.scheme != "file":
        raise ValueError(f"FileTransfer only handles file:// URLs, got {url!r}")
    return Path(unquote(parsed.path))


@dataclass(frozen=True)
class BuildTask:
    """What the dispatcher gives one build (the build job's meta, resolved to URLs)."""

    source_url: str
    slug_url: str
    metadata_url: str | None = None
    cache_url: str | None = None  # where to read the previous cache (may not exist)
    cache_put_url: str | None = None  # where to save the new cache; None = do not save
    config: Mapping[str, str] = field(default_factory=dict)
    stack: str = DEFAULT_STACK
    commit: str | None = None
    build_id: str | None = None


def run_build_task(
    task: BuildTask,
    transfer: Transfer,
    work_dir: Path,
    log: Log | None = None,
    buildpacks_dir: Path | None = None,
) -> SlugMetadata:
    """Fetch, build, store; return the slug's metadata or raise BuildFailed."""
    emit: Log = log or (lambda _line: None)
    work_dir.mkdir(parents=True, exist_ok=True)
    source = work_dir / "source.tar.gz"
    if not transfer.fetch(task.source_url, source):
        raise BuildFailed("The source archive to build does not exist (was the upload lost?)")
    cache_dir = work_dir / "cache"
    _restore_cache(task, transfer, work_dir, cache_dir, emit)

    request = BuildRequest(
        source=source,
        work_dir=work_dir / "build",
        cache_dir=cache_dir,
        output_dir=work_dir / "out",
        config=task.config,
        buildpacks_dir=buildpacks_dir or default_buildpacks_dir(),
        stack=task.stack,
        commit=task.commit,
        build_id=task.build_id,
    )
    result = build_slug(request, log=emit)
    emit("-----> Uploading the slug")
    transfer.store(result.slug_path, task.slug_url)
    if task.metadata_url:
        transfer.store(result.metadata_path, task.metadata_url)
    if task.cache_put_url:
        packed = work_dir / "cache-new.tar.gz"
        try:
            stats = pack_directory(cache_dir, packed)
            transfer.store(packed, task.cache_put_url)
            emit(f"       Build cache saved ({stats.compressed_bytes / 1024**2:.1f} MB)")
        except (ArchiveError, OSError) as exc:
            # The slug is fine; only the next build gets slower.
            emit(f" !     Warning: the build cache was not saved: {exc}")
    return result.metadata


def _restore_cache(
    task: BuildTask, transfer: Transfer, work_dir: Path, cache_dir: Path, emit: Log
) -> None:
    packed = work_dir / "cache-old.tar.gz"
    try:
        found = task.cache_url is not None and transfer.fetch(task.cache_url, packed)
    except OSError as exc:
        emit(f" !     Warning: the build cache could not be fetched ({exc}); building without it")
        found = False
    if not found:
        cache_dir.mkdir(parents=True, exist_ok=True)
        return
    try:
        extract_tarball(packed, cache_dir)
        emit("-----> Restored the build cache")
    except ArchiveError as exc:
        shutil.rmtree(cache_dir, ignore_errors=True)
        cache_dir.mkdir(parents=True)
        emit(f" !     Warning: the build cache is unreadable ({exc}); building without it")
