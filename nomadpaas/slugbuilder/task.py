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
A cache restored from the object it would be saved to, and left untouched by the
buildpacks (same names, sizes, modes, mtimes), is not packed and uploaded again. The
slug uploads on a thread while the cache is packed (fast gzip: only the next build reads
it back) and uploaded. (Packing the cache on a thread beside the slug's packing was
measured: no gain, both are mostly Python holding the GIL.)
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse, urlsplit

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder.archive import (
    FAST_GZIP_LEVEL,
    ArchiveError,
    extract_tarball,
    pack_directory,
)
from nomadpaas.slugbuilder.compile import (
    DEFAULT_STACK,
    BuildRequest,
    SlugMetadata,
    build_slug,
    default_buildpacks_dir,
)
from nomadpaas.slugbuilder.timings import Timings

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
    timings: Timings | None = None,
) -> SlugMetadata:
    """Fetch, build, store; return the slug's metadata or raise BuildFailed.

    `timings` receives the seconds of each phase (fetch_source, fetch_cache,
    restore_cache, the build's own phases, upload_slug, pack_cache, upload_cache).
    """
    emit: Log = log or (lambda _line: None)
    timer = timings or Timings()
    work_dir.mkdir(parents=True, exist_ok=True)
    source = work_dir / "source.tar.gz"
    with timer.phase("fetch_source"):
        if not transfer.fetch(task.source_url, source):
            raise BuildFailed("The source archive to build does not exist (was the upload lost?)")
    cache_dir = work_dir / "cache"
    restored = _restore_cache(task, transfer, work_dir, cache_dir, emit, timer)
    before = _fingerprint(cache_dir) if restored else None

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
    result = build_slug(request, log=emit, timings=timer)
    emit("-----> Uploading the slug")

    # The slug goes up while the cache is packed: one waits on the network, the other on
    # gzip, and both are done before the build record can say "succeeded".
    def upload_slug() -> None:
        with timer.phase("upload_slug"):
            transfer.store(result.slug_path, task.slug_url)

    upload = _Background(upload_slug)
    try:
        if task.cache_put_url:
            if (
                before is not None
                and _same_object(task.cache_url, task.cache_put_url)
                and _fingerprint(cache_dir) == before
            ):
                emit("       Build cache unchanged since it was restored: not saved again")
            else:
                _save_cache(task.cache_put_url, transfer, work_dir, cache_dir, emit, timer)
    finally:
        upload.join()
    if task.metadata_url:
        transfer.store(result.metadata_path, task.metadata_url)
    return result.metadata


class _Background:
    """Runs `fn` on a thread; `join` waits and re-raises what it raised."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised on the caller's thread by join()
            self._error = exc

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _save_cache(
    url: str, transfer: Transfer, work_dir: Path, cache_dir: Path, emit: Log, timer: Timings
) -> None:
    packed = work_dir / "cache-new.tar.gz"
    try:
        with timer.phase("pack_cache"):
            stats = pack_directory(cache_dir, packed, compresslevel=FAST_GZIP_LEVEL)
        with timer.phase("upload_cache"):
            transfer.store(packed, url)
        emit(f"       Build cache saved ({stats.compressed_bytes / 1024**2:.1f} MB)")
    except (ArchiveError, OSError) as exc:
        # The slug is fine; only the next build gets slower.
        emit(f" !     Warning: the build cache was not saved: {exc}")


def _same_object(get_url: str | None, put_url: str) -> bool:
    """Whether two (presigned) URLs name the same object: equal but for the signature."""
    if not get_url:
        return False
    a, b = urlsplit(get_url), urlsplit(put_url)
    return (a.scheme, a.netloc, a.path) == (b.scheme, b.netloc, b.path)


def _fingerprint(root: Path) -> frozenset[tuple[str, int, int, int, str]]:
    """Every entry under `root` as (path, mode, size, mtime ns, link target): a change a
    buildpack makes to the cache shows up here without reading file contents.

    Extraction gives every file its archived mtime, so a write, a replacement or a new
    file shows as a new mtime. (Not ctime: linking the cached venv into the build dir
    changes it without changing the cache.)
    """
    entries: set[tuple[str, int, int, int, str]] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
            rel = os.path.relpath(path, root)
            entries.add((rel, st.st_mode, st.st_size, st.st_mtime_ns, target))
    root_stat = os.lstat(root)
    entries.add((".", root_stat.st_mode, 0, root_stat.st_mtime_ns, ""))
    return frozenset(entries)


def _restore_cache(
    task: BuildTask, transfer: Transfer, work_dir: Path, cache_dir: Path, emit: Log, timer: Timings
) -> bool:
    """Fill `cache_dir` from `cache_url`; True when a cache was restored."""
    packed = work_dir / "cache-old.tar.gz"
    try:
        with timer.phase("fetch_cache"):
            found = task.cache_url is not None and transfer.fetch(task.cache_url, packed)
    except OSError as exc:
        emit(f" !     Warning: the build cache could not be fetched ({exc}); building without it")
        found = False
    if not found:
        cache_dir.mkdir(parents=True, exist_ok=True)
        return False
    try:
        with timer.phase("restore_cache"):
            extract_tarball(packed, cache_dir)
        emit("-----> Restored the build cache")
    except ArchiveError as exc:
        shutil.rmtree(cache_dir, ignore_errors=True)
        cache_dir.mkdir(parents=True)
        emit(f" !     Warning: the build cache is unreadable ({exc}); building without it")
        return False
    finally:
        packed.unlink(missing_ok=True)
    return True
