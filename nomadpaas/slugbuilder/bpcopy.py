"""The build's own copy of the buildpacks dir: hard links into a checked node snapshot.

Buildpacks run from a copy because `bin/compile` writes `export` next to its `bin/` (and
may write anything else into its own dir): the installed buildpacks must stay clean.
Copying 15 directories and 19 files makes 34 inodes per build, and creating an inode is
slow on a file system that has just deleted many (a journal-less ext4 reads every inode
freed in the last 30 s while it looks for one): ~10 ms of CPU in the build bench.
Hard links make only the directories (the copy is made on a thread, selection.py).

Hard links are never made to the installed files: a buildpack that rewrote one of its
own files in place would rewrite the installed one. They point into a snapshot kept
beside the node's build cache slots (``$NOMADPAAS_BUILD_CACHE_DIR/.nomadpaas-buildpacks/``;
localcache.py prunes only app slots), made by copying the installed dir with its files'
modes and mtimes. Every build first compares the snapshot with the installed dir (names,
types, modes, sizes, file mtimes, link targets: a write, a truncation or a chmod of a
linked file changes its mtime or mode); one that differs (a buildpack wrote into its
files, or the buildpacks were upgraded) is moved into the build's work dir, away, and a
fresh one made. A build that runs at the very moment another one's buildpack rewrites a
shared file can see that write, and one that restores the mtime it found goes unseen:
the bundled buildpacks (the only ones a build can use) write nothing but `export`, a new
file in the build's own directory (one left in the installed dir is copied, not linked).

Without a node cache, on another file system, or on any error while linking, the build
gets a plain copy, as before.
"""

from __future__ import annotations

import os
import stat
import zlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["SNAPSHOTS_DIR", "copy_buildpacks", "snapshot_root"]

#: Under the node's build cache root: the pristine snapshots, one per installed dir.
SNAPSHOTS_DIR = ".nomadpaas-buildpacks"
#: Snapshots kept at most (one per installed buildpacks dir the node builds with).
MAX_SNAPSHOTS = 4

# Beside the build's copy: a snapshot found stale, and one being made.
_STALE, _NEW = ".stale-snapshot", ".new-snapshot"
#: What a buildpack's compile writes next to its bin/ for the next buildpack.
_EXPORT = "export"
# (relative path, kind, mode, size, mtime ns, link target) per entry, sorted by path.
_Manifest = list[tuple[str, str, int, int, int, str]]


def snapshot_root(environ: dict[str, str] | os._Environ[str]) -> str | None:
    """Where the snapshots live: under $NOMADPAAS_BUILD_CACHE_DIR when it is an absolute
    directory (the node meta, resolved), else None (a plain copy then)."""
    root = environ.get("NOMADPAAS_BUILD_CACHE_DIR") or ""
    if "${" in root or not os.path.isabs(root) or not os.path.isdir(root):
        return None
    return os.path.join(root, SNAPSHOTS_DIR)


def copy_buildpacks(installed: str, dest: str, snapshots: str | None) -> bool:
    """Make `dest` a copy of the `installed` buildpacks dir; True when it is made of hard
    links into the pristine snapshot under `snapshots`, False for a plain copy."""
    if snapshots is not None and _same_device(snapshots, dest):
        try:
            snapshot = _current_snapshot(installed, snapshots, dest)
            if snapshot is None:
                return False  # `dest` is a plain copy already
            _link_tree(snapshot, dest)
            return True
        except OSError:
            _rmtree(dest)
            _rmtree(dest + _NEW)
    _copy_tree(installed, dest, keep_mtimes=False)
    return False


def _same_device(snapshots: str, dest: str) -> bool:
    """Whether links (and renames) can join `snapshots` and `dest`; leftovers of an
    earlier attempt in `dest`'s place are removed on the way."""
    for leftover in (dest + _STALE, dest + _NEW):
        if os.path.lexists(leftover):
            _rmtree(leftover)
    try:
        root = os.stat(os.path.dirname(snapshots)).st_dev
        return root == os.stat(os.path.dirname(os.path.abspath(dest))).st_dev
    except OSError:
        return False


def _current_snapshot(installed: str, snapshots: str, scratch: str) -> str | None:
    """The snapshot of `installed`, (re)made when missing or not equal to it. Rejected
    and new snapshots are moved through `scratch`-prefixed paths (the build's work dir,
    on the same file system; removed with it). None when a new one did not come out
    equal to `installed`: it is then the build's own plain copy, at `scratch`."""
    key = f"{zlib.crc32(os.path.realpath(installed).encode()):08x}"
    snapshot = os.path.join(snapshots, key)
    wanted = _manifest(installed)
    if os.path.isdir(snapshot):
        if _manifest(snapshot) == wanted:
            return snapshot
        os.rename(snapshot, scratch + _STALE)  # out of every later build's way
    fresh = scratch + _NEW
    _copy_tree(installed, fresh, keep_mtimes=True)
    if _manifest(fresh) != wanted:
        # The installed dir changed while it was copied, or this file system keeps
        # coarser times than the installed one's: a snapshot would never match.
        os.rename(fresh, scratch)
        return None
    os.makedirs(snapshots, mode=0o700, exist_ok=True)
    _forget_old(snapshots, keep=key)
    try:
        os.rename(fresh, snapshot)
    except OSError:
        if not os.path.isdir(snapshot):  # else another build put one there first: checked next time
            raise
        _rmtree(fresh)
    return snapshot


def _forget_old(snapshots: str, keep: str) -> None:
    """Remove the least recently made snapshots beyond MAX_SNAPSHOTS - 1 (not `keep`)."""
    with os.scandir(snapshots) as it:
        others = sorted((e.stat().st_mtime_ns, e.path) for e in it if e.name != keep)
    for _mtime, path in others[: max(len(others) - (MAX_SNAPSHOTS - 1), 0)]:
        _rmtree(path)


def _manifest(root: str) -> _Manifest:
    """Every entry under `root`, as what a build could notice of it (directories: mode only;
    their mtimes move as entries come and go)."""
    out: _Manifest = []
    _scan_into(out, root, "")
    out.sort()
    return out


def _scan_into(out: _Manifest, directory: str, rel: str) -> None:
    with os.scandir(directory) as it:
        entries = list(it)
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        name = rel + entry.name
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            out.append((name, "d", mode, 0, 0, ""))
            _scan_into(out, entry.path, name + "/")
        elif stat.S_ISLNK(st.st_mode):
            out.append((name, "l", 0, 0, 0, os.readlink(entry.path)))
        else:
            out.append((name, "f", mode, st.st_size, st.st_mtime_ns, ""))


def _link_tree(source: str, dest: str) -> None:
    """`dest` as `source`: new directories (same modes), hard links to its files, same
    symlinks."""
    _clone_tree(source, dest, _link_file)


def _copy_tree(source: str, dest: str, *, keep_mtimes: bool) -> None:
    """Copy `source` to `dest`: files' bytes and modes (and mtimes when asked; not
    extended attributes), directories' modes, symlinks as symlinks."""
    _clone_tree(source, dest, _copy_file_and_mtime if keep_mtimes else _copy_file)


def _clone_tree(
    source: str, dest: str, place_file: Callable[[os.DirEntry[str], str], None]
) -> None:
    """`dest` as `source`: new directories with the same modes, the same symlinks, and
    each file put at its place by `place_file(entry, target)`."""
    os.mkdir(dest)
    with os.scandir(source) as it:
        entries = list(it)
    for entry in entries:
        target = os.path.join(dest, entry.name)
        if entry.is_dir(follow_symlinks=False):
            _clone_tree(entry.path, target, place_file)
        elif entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        else:
            place_file(entry, target)
    os.chmod(dest, stat.S_IMODE(os.stat(source).st_mode))


def _link_file(entry: os.DirEntry[str], target: str) -> None:
    if entry.name == _EXPORT:
        # One left in the installed dir (a compile run there by hand): compile
        # rewrites it in place, which must not reach the other builds.
        _copy_file(entry, target)
    else:
        os.link(entry.path, target, follow_symlinks=False)


def _copy_file(entry: os.DirEntry[str], target: str) -> None:
    import shutil  # not at import: a warm build links its buildpacks, copying nothing

    shutil.copyfile(entry.path, target, follow_symlinks=False)
    os.chmod(target, stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode))


def _copy_file_and_mtime(entry: os.DirEntry[str], target: str) -> None:
    _copy_file(entry, target)
    st = entry.stat(follow_symlinks=False)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _rmtree(path: str) -> None:
    """`shutil.rmtree(path, ignore_errors=True)`, shutil imported only when a tree is
    removed (bz2, lzma…: ~2 ms of the build task's start otherwise)."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
