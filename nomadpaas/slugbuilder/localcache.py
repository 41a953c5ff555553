"""The node-local tier of the build cache: the last cache tree this node used per app and stack.

Dokku and CI runners keep the build cache on the machine; S3 stays the truth (any node may
build any app). A build asks S3 for the cache object with ``If-None-Match: <etag>``: a 304
says this node's tree is that object, so the tree *is* CACHE_DIR (no download, no
extraction). Layout under the node's ``NOMADPAAS_BUILD_CACHE_DIR`` (node meta
``nomadpaas.build_cache_dir``, see jobs/build.nomad.json):

    <root>/<app>/<stack>/lock         flock'ed by the one build using this slot; mtime = last use
    <root>/<app>/<stack>/tree/        the cache tree, used as CACHE_DIR
    <root>/<app>/<stack>/tag          {"object", "etag", "bytes"}: tree/ equals that S3 object
    <root>/<app>/<stack>/tree.spare/  tree/*/slug/ and tree/*/key as tagged, cloned (links)
    <root>/<app>/<stack>/spare.new/, trash.*/   a spare being made; spares out of use

The tag exists only while the tree is known to equal the object: `take()` removes it
before a build touches the tree and `record()` writes it back once the tree matches S3
again (after an unchanged build, or after the new cache was uploaded). A build that fails
after changing the tree, or is killed, leaves no tag, so the next build ignores the tree
and restores S3's copy: a broken build cannot poison the next (Heroku's rule), with no
copy of the tree per build.

The spare is for the next build's buildpacks, which find it at "$CACHE_DIR.spare": what
a buildpack keeps to put into the app as is (`<buildpack>/slug/`) and its `key`, as the
same files as the tree's (hard links: it costs directory inodes only) in directories of
its own, which the buildpack may take by rename instead of creating them on the build's
path (the python buildpack takes its cached venv: creating ~45 directories is slow on a
file system with many recent deletes). Nothing else is cloned (an npm cache has
thousands of directories, and no use for a spare). The build task makes it after
`record()`, once the build's result is out (`make_spare`), and takes it out of use
(`drop_spare`, one rename) before the tree may change and after any build that may have
used it, so: **while a tag is on disk, a spare next to it is a clone of that tree's
parts**. A build killed before `record()` leaves no tag (its spare is dropped by the
next build); one killed while cloning leaves only `spare.new`, never trusted.

Locks are non-blocking: a second concurrent build of the same app gets None and uses the
plain S3 path in its own work dir. App and stack must be plain names (one path component
each); anything else gets no slot. Disk use is capped by `prune`: slots unused for
`MAX_AGE_S`, then the least recently used ones past `MAX_BYTES` or `MAX_SLOTS`, are
removed (only when their lock is free). Deleting the whole root while no build runs is
always safe: the next builds restore from S3.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections import namedtuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    from typing import NamedTuple

__all__ = ["MAX_AGE_S", "MAX_BYTES", "MAX_SLOTS", "CacheSlot", "LocalCache", "Tag"]

#: A slot unused this long is removed (seconds): 14 days.
MAX_AGE_S = 14 * 24 * 3600
#: Total bytes of all trees kept (as recorded in their tags); LRU slots go first. 5 GiB.
MAX_BYTES = 5 * 1024**3
#: Slots (app × stack) kept at most; LRU slots go first.
MAX_SLOTS = 64
#: One path component, as storage/keys.py allows for app names and stacks.
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_LOCK, _TREE, _TAG = "lock", "tree", "tag"
#: Beside the tree, named as buildpacks find it: CACHE_DIR + ".spare".
_SPARE = _TREE + ".spare"
_SPARE_NEW = "spare.new"
_TRASH_PREFIX = "trash."
#: What the spare clones of each top-level directory of the tree (see above).
_SPARE_DIR, _SPARE_FILE = "slug", "key"
#: Tries to lock a slot that `prune` removes at the same moment.
_LOCK_ATTEMPTS = 3
#: Polling a busy slot's lock while waiting: first interval and cap (seconds).
_WAIT_FIRST_S = 0.01
_WAIT_MAX_S = 0.1


if TYPE_CHECKING:

    class Tag(NamedTuple):
        """Which S3 object a tree equals: the object's URL without query, and its ETag."""

        object: str
        etag: str
        bytes: int = 0

else:  # the same class, without importing `typing` (the build task's start)
    Tag = namedtuple("Tag", ["object", "etag", "bytes"], defaults=[0])
    Tag.__doc__ = "Which S3 object a tree equals: the object's URL without query, and its ETag."


class LocalCache:
    """The root of the node's build cache slots.

    Parameters:
        root: an absolute directory (created, mode 0700: caches hold app dependencies).
        max_age_s, max_bytes, max_slots: the pruning limits (defaults above).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_age_s: float = MAX_AGE_S,
        max_bytes: int = MAX_BYTES,
        max_slots: int = MAX_SLOTS,
    ) -> None:
        self.root = os.fspath(root)
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.max_slots = max_slots

    @classmethod
    def from_env(cls, value: str | None) -> LocalCache | None:
        """The cache at `value` ($NOMADPAAS_BUILD_CACHE_DIR), or None when it is unset,
        empty, relative, or a node meta interpolation the node did not resolve."""
        if not value or "${" in value or not os.path.isabs(value):
            return None
        return cls(value)

    def acquire(self, app: str, stack: str, wait_s: float = 0.0) -> CacheSlot | None:
        """The slot of `app` and `stack`, locked for this build; None when the names are
        not plain, the slot stays busy (another build of the app) for `wait_s`, or the
        disk refuses.

        Waiting is for the common case of a push right after a push: the previous build's
        task has returned its result and is still saving the cache it just made, so this
        build would otherwise miss the freshest cache (and, on a new app, any cache)."""
        if not (_NAME_RE.fullmatch(app) and _NAME_RE.fullmatch(stack)):
            return None
        app_dir = os.path.join(self.root, app)
        slot_dir = os.path.join(app_dir, stack)
        deadline = time.monotonic() + wait_s
        delay = _WAIT_FIRST_S
        attempts = 0
        while attempts < _LOCK_ATTEMPTS:
            try:
                for path in (self.root, app_dir, slot_dir):
                    os.makedirs(path, mode=0o700, exist_ok=True)
                    if os.path.islink(path):  # the slot must be this directory, not elsewhere
                        return None
                fd = _lock(slot_dir)
            except OSError:
                return None
            if fd is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, _WAIT_MAX_S)
                continue
            attempts += 1
            try:
                # `prune` may have removed the slot between our open and our lock: then
                # this lock guards a deleted file, and the slot must be made again.
                if os.stat(os.path.join(slot_dir, _LOCK)).st_ino == os.fstat(fd).st_ino:
                    os.utime(fd)  # last use, for pruning
                    return CacheSlot(slot_dir, fd)
            except OSError:
                pass
            os.close(fd)
        return None

    def prune(self, now: float | None = None) -> list[str]:
        """Remove stale and least recently used slots over the limits; return them.

        Busy slots (locked by a running build) are skipped.
        """
        now = time.time() if now is None else now
        slots: list[tuple[float, int, str]] = []  # (last use, bytes, dir)
        with contextlib.suppress(OSError):
            for app in os.listdir(self.root):
                app_dir = os.path.join(self.root, app)
                # Only app slots: buildpacks keep node facts beside them (`.buildpacks`).
                if not _NAME_RE.fullmatch(app) or not os.path.isdir(app_dir):
                    continue
                if os.path.islink(app_dir):
                    continue
                for stack in os.listdir(app_dir):
                    if not _NAME_RE.fullmatch(stack):
                        continue
                    slot_dir = os.path.join(app_dir, stack)
                    try:
                        used = os.stat(os.path.join(slot_dir, _LOCK)).st_mtime
                    except OSError:
                        used = 0.0
                    tag = _read_tag(os.path.join(slot_dir, _TAG))
                    # An untagged tree is useless to the next build: it goes first.
                    slots.append((used if tag else 0.0, tag.bytes if tag else 0, slot_dir))
        slots.sort()
        removed: list[str] = []
        total = sum(size for _, size, _ in slots)
        count = len(slots)
        for used, size, slot_dir in slots:
            stale = used < now - self.max_age_s
            if not (stale or total > self.max_bytes or count > self.max_slots):
                break
            if _remove_if_free(slot_dir):
                removed.append(slot_dir)
                total -= size
                count -= 1
        return removed


class CacheSlot:
    """One locked slot: its tree, and the tag saying which S3 object the tree equals."""

    def __init__(self, slot_dir: str, lock_fd: int) -> None:
        self.dir = slot_dir
        self.tree = os.path.join(slot_dir, _TREE)
        #: The spare clone of the tree (see the module's docstring); may not exist.
        self.spare = os.path.join(slot_dir, _SPARE)
        self._fd: int | None = lock_fd

    def take(self) -> Tag | None:
        """The recorded tag, removed from disk: from now on the tree is in use."""
        path = os.path.join(self.dir, _TAG)
        tag = _read_tag(path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        if tag is not None and not os.path.isdir(self.tree):
            return None
        return tag

    def record(self, tag: Tag) -> None:
        """Say that the tree now equals `tag`'s object (written atomically)."""
        path = os.path.join(self.dir, _TAG)
        partial = os.path.join(self.dir, _TAG + ".partial")
        with open(partial, "w") as f:
            f.write(json.dumps(tag._asdict()))
        os.replace(partial, path)

    def reset_tree(self) -> str:
        """An empty tree (the previous one removed, and its spare out of use)."""
        self.drop_spare()
        if os.path.exists(self.tree):
            _rmtree(self.tree)
        os.mkdir(self.tree, 0o700)
        return self.tree

    def drop_spare(self) -> None:
        """Take the spare out of use: one rename (cheap on a build's path); `make_spare`
        or `prune` removes it later."""
        trash = os.path.join(self.dir, f"{_TRASH_PREFIX}{os.getpid()}.{time.monotonic_ns()}")
        try:
            os.rename(self.spare, trash)
        except FileNotFoundError:
            return
        except OSError:  # cannot happen in our own directory; still, never leave it trusted
            _rmtree(self.spare, ignore_errors=True)

    def make_spare(self) -> bool:
        """Clone the tree's parts as the spare for the next build (after `record()`:
        only a tree that equals its tag is cloned); False when it could not be made (no
        spare then).

        Made as spare.new and renamed, so no build ever sees half a spare. Also removes
        spares out of use. Off the build's path: ~50 directories for a Flask venv.
        """
        self.drop_spare()
        _remove_spares(self.dir, keep_spare=True)
        new = os.path.join(self.dir, _SPARE_NEW)
        try:
            os.mkdir(new, 0o700)
            with os.scandir(self.tree) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        _clone_parts(entry.path, os.path.join(new, entry.name))
            os.rename(new, self.spare)
        except OSError:
            _rmtree(new, ignore_errors=True)
            return False
        return True

    def release(self) -> None:
        """Unlock (idempotent). The process exiting also unlocks."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_tag(path: str) -> Tag | None:
    try:
        with open(path) as f:
            raw = json.loads(f.read())
        tag = Tag(str(raw["object"]), str(raw["etag"]), int(raw.get("bytes", 0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return tag if tag.object and tag.etag else None


def _lock(slot_dir: str) -> int | None:
    """An fd holding the slot's lock exclusively, or None when another build holds it."""
    fd = os.open(os.path.join(slot_dir, _LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _remove_if_free(slot_dir: str) -> bool:
    try:
        fd = _lock(slot_dir)
    except OSError:
        return False
    if fd is None:
        return False
    try:
        # Untag first: should the removal stop half-way, the rest is never trusted.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(slot_dir, _TAG))
        _remove_spares(slot_dir, keep_spare=False)
        _rmtree(os.path.join(slot_dir, _TREE), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(slot_dir, _LOCK))
        with contextlib.suppress(OSError):
            os.rmdir(slot_dir)
            os.rmdir(os.path.dirname(slot_dir))  # only when the app has no other slot
    finally:
        os.close(fd)
    return True


def _remove_spares(slot_dir: str, *, keep_spare: bool) -> None:
    """Remove the slot's spares out of use, and a half-made one; the spare in use too
    unless `keep_spare`."""
    try:
        names = os.listdir(slot_dir)
    except OSError:
        return
    for name in names:
        if (
            name.startswith(_TRASH_PREFIX)
            or name == _SPARE_NEW
            or (name == _SPARE and not keep_spare)
        ):
            _rmtree(os.path.join(slot_dir, name), ignore_errors=True)


def _clone_parts(source: str, dest: str) -> None:
    """`source`/slug/ cloned (`_clone`) and `source`/key linked into `dest`, if there."""
    slug = os.path.join(source, _SPARE_DIR)
    if not os.path.isdir(slug) or os.path.islink(slug):
        return
    os.mkdir(dest, 0o700)
    _clone(slug, os.path.join(dest, _SPARE_DIR))
    key = os.path.join(source, _SPARE_FILE)
    if os.path.isfile(key) and not os.path.islink(key):
        os.link(key, os.path.join(dest, _SPARE_FILE))


def _clone(source: str, dest: str) -> None:
    """`dest` as a copy of `source`'s directories holding hard links to its files and
    symlinks (``cp -al``, without its process): directories keep their modes."""
    os.mkdir(dest, 0o700)
    with os.scandir(source) as entries:
        for entry in entries:
            target = os.path.join(dest, entry.name)
            if entry.is_dir(follow_symlinks=False):
                _clone(entry.path, target)
            else:  # a file, or a symlink itself (link(2) does not follow it)
                os.link(entry.path, target, follow_symlinks=False)
    os.chmod(dest, os.stat(source).st_mode & 0o7777)


def _rmtree(path: str, ignore_errors: bool = False) -> None:
    """`shutil.rmtree`, imported when a tree is removed: never before the build's
    result on a warm build (shutil pulls in bz2, lzma and fnmatch: ~2 ms of a start)."""
    import shutil

    shutil.rmtree(path, ignore_errors=ignore_errors)
