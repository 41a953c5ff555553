"""The build cache of one build: restore it, fingerprint it, save it (best effort).

With a node-local tier (localcache.py) the app's slot on this node is CACHE_DIR: a
conditional GET (``If-None-Match``) that answers 304 means no download and no extraction;
otherwise the slot is refilled from S3's object (GNU tar after a header check:
fastextract.py). Once a slot build's cache is recorded, the slot gets a spare (hard-link
clone of what buildpacks put into the app as is) that the next build's buildpacks take by
rename instead of creating directories (`CacheSlot.make_spare`, off the push's path).

A cache restored from the object it would be saved to, and left untouched by the
buildpacks (same names, sizes, modes, mtimes), is not packed and uploaded again. The
cache is saved after the slug is stored and `on_slug_stored` has reported the result, so
the platform does not wait for it (fast gzip: only the next build reads it back).
"""

from __future__ import annotations

import os
import stat

from nomadpaas.slugbuilder.archive import FAST_GZIP_LEVEL, ArchiveError, pack_directory
from nomadpaas.slugbuilder.fastextract import extract_cache_tarball
from nomadpaas.slugbuilder.http_transfer import Fetched, object_id
from nomadpaas.slugbuilder.localcache import Tag

__all__ = [
    "fingerprint",
    "record_if_untouched",
    "restore_cache",
    "restore_slot",
    "same_object",
    "save_cache",
    "tree_bytes",
]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    from nomadpaas.slugbuilder.localcache import CacheSlot
    from nomadpaas.slugbuilder.task import BuildTask, Log, Transfer
    from nomadpaas.slugbuilder.timings import Timings


def record_if_untouched(
    slot: CacheSlot, tag: Tag, cache_dir: str, before: frozenset[tuple[str, int, int, int, str]]
) -> None:
    """After a failed build: the slot keeps its tag only if the tree is as restored."""
    if fingerprint(cache_dir) == before:
        slot.record(tag._replace(bytes=tree_bytes(before)))


def save_cache(
    url: str, transfer: Transfer, work_dir: str, cache_dir: str, emit: Log, timer: Timings
) -> str | None:
    """Pack and upload the cache; the new object's ETag ("" when unknown, None on failure)."""
    packed = os.path.join(work_dir, "cache-new.tar.gz")
    try:
        with timer.phase("pack_cache"):
            stats = pack_directory(cache_dir, packed, compresslevel=FAST_GZIP_LEVEL)
        with timer.phase("upload_cache"):
            etag = transfer.store(packed, url)
        emit(f"       Build cache saved ({stats.compressed_bytes / 1024**2:.1f} MB)")
    except (ArchiveError, OSError) as exc:
        # The slug is fine; only the next build gets slower.
        emit(f" !     Warning: the build cache was not saved: {exc}")
        return None
    finally:
        _unlink_if_there(packed)
    return etag or ""


def same_object(get_url: str | None, put_url: str) -> bool:
    """Whether two (presigned) URLs name the same object: equal but for the signature."""
    return bool(get_url) and object_id(get_url or "") == object_id(put_url)


def fingerprint(root: str) -> frozenset[tuple[str, int, int, int, str]]:
    """Every entry under `root` as (path, mode, size, mtime ns, link target): a change a
    buildpack makes to the cache shows up here without reading file contents.

    Extraction gives every file its archived mtime, so a write, a replacement or a new
    file shows as a new mtime. (Not ctime: linking the cached venv into the build dir
    changes it without changing the cache.)
    """
    entries: set[tuple[str, int, int, int, str]] = set()
    _scan_into(entries, root, "")
    root_stat = os.lstat(root)
    entries.add((".", root_stat.st_mode, 0, root_stat.st_mtime_ns, ""))
    return frozenset(entries)


def _scan_into(entries: set[tuple[str, int, int, int, str]], directory: str, rel: str) -> None:
    """Add every entry below `directory` (named `rel`/… relative to the root); what
    ``os.walk`` plus ``lstat`` and ``relpath`` per entry gave, at half the cost: the
    warm build fingerprints the whole restored cache before it compiles. Like os.walk,
    a directory that cannot be listed is skipped and symlinks are not followed."""
    try:
        scanner = os.scandir(directory)
    except OSError:
        return
    subdirs: list[tuple[str, str]] = []
    with scanner:
        for entry in scanner:
            st = entry.stat(follow_symlinks=False)
            name = rel + entry.name
            if stat.S_ISLNK(st.st_mode):
                entries.add((name, st.st_mode, st.st_size, st.st_mtime_ns, os.readlink(entry.path)))
                continue
            entries.add((name, st.st_mode, st.st_size, st.st_mtime_ns, ""))
            if stat.S_ISDIR(st.st_mode):
                subdirs.append((entry.path, name + "/"))
    for path, prefix in subdirs:
        _scan_into(entries, path, prefix)


def tree_bytes(fingerprint: frozenset[tuple[str, int, int, int, str]]) -> int:
    return sum(size for _, _, size, _, _ in fingerprint)


def restore_cache(
    task: BuildTask, transfer: Transfer, work_dir: str, cache_dir: str, emit: Log, timer: Timings
) -> Tag | None:
    """Fill `cache_dir` from `cache_url`; the restored object's tag, None on a miss."""
    packed = os.path.join(work_dir, "cache-old.tar.gz")
    os.makedirs(cache_dir, exist_ok=True)
    fetched = _fetch_cache(task, transfer, packed, None, emit, timer)
    if fetched is None or fetched.status != "fetched":
        return None
    if not _extract_cache(packed, cache_dir, emit, timer):
        return None
    return Tag(object_id(task.cache_url or ""), fetched.etag or "")


def restore_slot(
    task: BuildTask, transfer: Transfer, work_dir: str, slot: CacheSlot, emit: Log, timer: Timings
) -> Tag | None:
    """Make the slot's tree this app's cache: as it is when S3 still holds the object it
    equals (a 304), else from S3's object. The restored object's tag, None on a miss."""
    known = slot.take()
    cache_object = object_id(task.cache_url or "")
    etag = known.etag if known is not None and known.object == cache_object else None
    packed = os.path.join(work_dir, "cache-old.tar.gz")
    fetched = _fetch_cache(task, transfer, packed, etag, emit, timer)
    if known is not None and etag is not None:
        if fetched is not None and fetched.status == "not-modified":
            emit("-----> Restored the build cache (this node's copy is current)")
            return known
        if fetched is None:  # S3 did not answer: an earlier good cache beats none
            emit("       Using this node's copy of the build cache (S3 could not confirm it)")
            return known
    with timer.phase("restore_cache"):
        slot.reset_tree()
    if fetched is None or fetched.status != "fetched":
        return None
    if not _extract_cache(packed, slot.tree, emit, timer):
        return None
    return Tag(cache_object, fetched.etag or "")


def _fetch_cache(
    task: BuildTask,
    transfer: Transfer,
    packed: str,
    etag: str | None,
    emit: Log,
    timer: Timings,
) -> Fetched | None:
    """The (conditional) GET of the cache; None when it failed (a warning says so)."""
    try:
        with timer.phase("fetch_cache"):
            if task.cache_url is None:
                return Fetched("missing")
            return transfer.fetch_tagged(task.cache_url, packed, etag)
    except OSError as exc:
        emit(f" !     Warning: the build cache could not be fetched ({exc})")
        return None


def _extract_cache(packed: str, cache_dir: str, emit: Log, timer: Timings) -> bool:
    try:
        with timer.phase("restore_cache"):
            extract_cache_tarball(packed, cache_dir, scratch=os.path.dirname(packed))
        emit("-----> Restored the build cache")
    except ArchiveError as exc:
        import shutil  # a broken cache only

        shutil.rmtree(cache_dir, ignore_errors=True)
        os.makedirs(cache_dir)
        emit(f" !     Warning: the build cache is unreadable ({exc}); building without it")
        return False
    finally:
        _unlink_if_there(packed)
    return True


def _unlink_if_there(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
