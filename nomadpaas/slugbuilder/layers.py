"""Pack a slug as gzip members, one per large top-level directory, reusing unchanged ones.

A slug is one tar stream, gzip-compressed as several members back to back (RFC 1952
allows it; every reader we use sees one stream, see `gzmember`):

    member 1   ./app/ and every entry outside the layers            (packed each build)
    member 2…  one per layer: a large top-level directory, e.g. .venv or node_modules,
               with all its entries, in name order                  (reusable)
    last       tar's end-of-archive blocks and record padding

A layer's tar entries depend only on its own tree (hardlinks are resolved within the
member), so its compressed bytes can be kept in the build cache (`layer_cache`, owned by
the slug compiler: CACHE_DIR/.nomadpaas/slug-layers) next to a fingerprint of the tree,
and the next build whose tree has the same fingerprint copies them instead of reading
and compressing the files again. Reused and fresh layers give the same bytes, so the
slug's sha256 (taken over the final bytes) does not depend on the cache.

The fingerprint holds, per entry: path, type, normalised mode, size, link target and,
for files, mtime to the nanosecond; directory and symlink mtimes are not in the slug (0)
so they are not in the fingerprint either. A whole-second mtime is usually one an
unpacker set (npm's 1985 date, tar, this build cache's own files) rather than the time
of a write, so two versions of a file can share it: such files are fingerprinted by
content (BLAKE2b) too. The level, zlib's version and the writer's format are part of
the fingerprint, since they change the bytes.

Only layers whose files are mostly hard links are stored: that is a tree the buildpack
also keeps in its own cache and links back next time (the python buildpack's venv, like
Heroku's ``cp --link``), so the next build finds the very same files and the layer
matches. A tree made afresh each build (``npm ci``, collectstatic output, a source
directory) would never match; storing it would only make every push save the build
cache again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zlib

from nomadpaas.frozen import Frozen, init_fields
from nomadpaas.slugbuilder.gzmember import DeflatePool, GzipMember, deflate_pool
from nomadpaas.slugbuilder.tarwriter import (
    DIR,
    FILE,
    HARDLINK,
    Entry,
    TarStream,
    end_of_archive,
    entry_for,
    resolve_hardlinks,
    scan_tree,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["LAYER_MIN_BYTES", "LAYER_MIN_ENTRIES", "SlugPack", "pack_slug"]

#: A top-level directory becomes its own member from this many file bytes or entries on.
LAYER_MIN_BYTES = 256 * 1024
LAYER_MIN_ENTRIES = 200
#: Bump when the tar or gzip bytes written for the same tree change.
LAYER_FORMAT = 3
_NS_PER_S = 1_000_000_000
_COPY_CHUNK_BYTES = 1024 * 1024


class SlugPack(Frozen):
    """What `pack_slug` wrote: counts over the whole slug and which layers it reused."""

    __match_args__ = (
        "files", "uncompressed_bytes", "compressed_bytes", "sha256", "md5", "layers", "reused",
    )  # fmt: skip
    __slots__ = __match_args__
    files: int  # non-directory entries
    uncompressed_bytes: int  # regular files' bytes
    compressed_bytes: int
    sha256: str
    md5: str  # what S3 reports as the ETag of a single-part upload of these bytes
    layers: tuple[str, ...]
    reused: tuple[str, ...]

    def __init__(
        self,
        files: int,
        uncompressed_bytes: int,
        compressed_bytes: int,
        sha256: str,
        md5: str,
        layers: tuple[str, ...],
        reused: tuple[str, ...],
    ) -> None:
        init_fields(
            self, files=files, uncompressed_bytes=uncompressed_bytes,
            compressed_bytes=compressed_bytes, sha256=sha256, md5=md5, layers=layers,
            reused=reused,
        )  # fmt: skip


class _Output:
    """The slug file and its running sha256, MD5 and length."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.file = open(path, "wb")  # noqa: SIM115 (closed by pack_slug)
        self.digest = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.length = 0

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.digest.update(data)
        self.md5.update(data)
        self.length += len(data)


def pack_slug(
    build_dir: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    prefix: str = "app",
    level: int,
    layer_cache: str | os.PathLike[str] | None = None,
    source_epoch_ns: int | None = None,
    exclude: frozenset[str] = frozenset({".git"}),
) -> SlugPack:
    """Write `build_dir` to `dest` as a layered tar.gz with entries under ``./<prefix>/``.

    `layer_cache` is where layers are kept between builds (None: no reuse).
    `source_epoch_ns` (the newest mtime of the app's source) caps the mtimes of files in
    the first member, so files the build writes there (launcher, .profile.d) carry the
    same time for the same source and an unchanged app packs to the same bytes. Layers
    keep their files' own mtimes: capping them by a time that moves with every push
    would make them differ between builds.
    Raises ArchiveError (from the tree scan) for links leaving the tree or special files.
    """
    root = os.path.realpath(build_dir)
    arc_root = f"./{prefix.strip('/')}" if prefix.strip("/") else "."
    rest: list[Entry] = [entry_for(root, "")] if arc_root != "." else []
    layers: list[tuple[str, list[Entry]]] = []
    with os.scandir(root) as it:
        top = sorted(e.name for e in it if e.name not in exclude)
    for name in top:
        entry = entry_for(os.path.join(root, name), name)
        if entry.kind != DIR:
            rest.append(entry)
            continue
        tree = [entry, *scan_tree(entry.path, name)]
        if _is_large(tree):
            layers.append((name, resolve_hardlinks(tree)))
        else:
            rest.extend(tree)
    rest = resolve_hardlinks(rest)

    out = _Output(dest)
    reused: list[str] = []
    kept: set[str] = set()
    pool = deflate_pool()
    try:
        member = GzipMember(out.write, level, pool)
        stream = TarStream(member.write, exact_mtimes=False, clamp_ns=source_epoch_ns)
        stream.add(arc_root, rest)
        stream.flush()
        member.close()
        tar_bytes = stream.length
        for name, entries in layers:
            cache = None
            if layer_cache is not None and _linked_from_elsewhere(entries):
                cache = _LayerCache(layer_cache, name)
                kept.add(cache.key)
            fingerprint = _fingerprint(entries, arc_root, level) if cache is not None else ""
            if cache is not None and (length := cache.copy_if_same(fingerprint, out)):
                reused.append(name)
                tar_bytes += length
                continue
            tar_bytes += _pack_layer(arc_root, entries, level, pool, out, cache, fingerprint)
        member = GzipMember(out.write, level)
        member.write(end_of_archive(tar_bytes))
        member.close()
    finally:
        out.file.close()
        if pool is not None:
            pool.shutdown()
    if layer_cache is not None:
        _forget_others(layer_cache, kept)
    everything = [*rest, *(e for _name, entries in layers for e in entries)]
    return SlugPack(
        files=sum(1 for e in everything if e.kind != DIR and e.rel),
        uncompressed_bytes=sum(e.size for e in everything if e.kind == FILE),
        compressed_bytes=out.length,
        sha256=out.digest.hexdigest(),
        md5=out.md5.hexdigest(),
        layers=tuple(name for name, _entries in layers),
        reused=tuple(reused),
    )


def _is_large(tree: list[Entry]) -> bool:
    return len(tree) >= LAYER_MIN_ENTRIES or sum(e.size for e in tree) >= LAYER_MIN_BYTES


def _linked_from_elsewhere(entries: list[Entry]) -> bool:
    """Whether most files have another name (a hardlink within the layer counts too)."""
    files = [e for e in entries if e.kind in (FILE, HARDLINK)]
    linked = sum(1 for e in files if e.kind == HARDLINK or e.inode is not None)
    return bool(files) and 2 * linked > len(files)


def _pack_layer(
    arc_root: str,
    entries: list[Entry],
    level: int,
    pool: DeflatePool | None,
    out: _Output,
    cache: _LayerCache | None,
    fingerprint: str,
) -> int:
    """Compress one layer into the slug (and the cache); returns its tar bytes."""
    writer = cache.writer() if cache is not None else None

    def both(data: bytes) -> None:
        out.write(data)
        if writer is not None:
            writer.write(data)

    member = GzipMember(both, level, pool)
    stream = TarStream(member.write, exact_mtimes=False)
    stream.add(arc_root, entries)
    stream.flush()
    member.close()
    if writer is not None and cache is not None:
        cache.commit(writer, fingerprint, stream.length)
    return stream.length


def _fingerprint(entries: list[Entry], arc_root: str, level: int) -> str:
    digest = hashlib.sha256()
    header = f"nomadpaas slug layer {LAYER_FORMAT} {arc_root!r} {level} {zlib.ZLIB_RUNTIME_VERSION}"
    digest.update(header.encode() + b"\n")
    for e in entries:
        mtime = e.mtime_ns if e.kind in (FILE, HARDLINK) else 0
        digest.update(repr((e.rel, e.kind, e.mode, e.size, mtime, e.link)).encode() + b"\n")
        if e.kind == FILE and e.mtime_ns % _NS_PER_S == 0:
            digest.update(_content_digest(e.path))
    return digest.hexdigest()


def _content_digest(path: str) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
        while chunk := f.read(_COPY_CHUNK_BYTES):
            digest.update(chunk)
    return digest.digest()


class _LayerWriter:
    """The cache copy of a layer being compressed; stops quietly when the disk fails."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.digest = hashlib.sha256()
        self.length = 0
        self.file: Any = None
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.file = open(path, "wb")  # noqa: SIM115 (closed by commit)
        except OSError:
            self.file = None

    def write(self, data: bytes) -> None:
        if self.file is None:
            return
        try:
            self.file.write(data)
        except OSError:
            self.file.close()
            self.file = None
            return
        self.digest.update(data)
        self.length += len(data)


class _LayerCache:
    """One layer's files in the cache: ``<key>.gz`` (its member) and ``<key>.json``."""

    def __init__(self, directory: str | os.PathLike[str], name: str) -> None:
        self.name = name
        self.key = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:24]
        self.directory = os.fspath(directory)
        self.data = os.path.join(self.directory, f"{self.key}.gz")
        self.meta = os.path.join(self.directory, f"{self.key}.json")

    def copy_if_same(self, fingerprint: str, out: _Output) -> int:
        """Copy the stored member into `out` when it matches; its tar bytes, else 0.

        The bytes are checked against their recorded sha256 while they are copied; on a
        mismatch `out` is rewound and 0 returned (the layer is then packed afresh).
        """
        try:
            with open(self.meta) as f:
                meta = json.loads(f.read())
            if meta.get("fingerprint") != fingerprint or meta.get("name") != self.name:
                return 0
            expected = (str(meta["gz_sha256"]), int(meta["gz_bytes"]), int(meta["tar_bytes"]))
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        start, saved = out.length, out.digest.copy()
        digest, length = hashlib.sha256(), 0
        try:
            with open(self.data, "rb") as f:
                while chunk := f.read(_COPY_CHUNK_BYTES):
                    digest.update(chunk)
                    length += len(chunk)
                    out.write(chunk)
        except OSError:
            length = -1
        if (digest.hexdigest(), length) == expected[:2]:
            return expected[2]
        out.file.seek(start)
        out.file.truncate()
        out.digest, out.length = saved, start
        return 0

    def writer(self) -> _LayerWriter:
        return _LayerWriter(os.path.join(self.directory, f".{self.key}.gz.partial"))

    def commit(self, writer: _LayerWriter, fingerprint: str, tar_bytes: int) -> None:
        """Keep the freshly written member (data first, then the metadata naming it)."""
        if writer.file is None:
            _unlink_quietly(writer.path)
            return
        meta = {
            "format": LAYER_FORMAT,
            "name": self.name,
            "fingerprint": fingerprint,
            "tar_bytes": tar_bytes,
            "gz_bytes": writer.length,
            "gz_sha256": writer.digest.hexdigest(),
        }
        partial = os.path.join(self.directory, f".{self.key}.json.partial")
        try:
            writer.file.close()
            os.replace(writer.path, self.data)
            with open(partial, "w") as f:
                f.write(json.dumps(meta, indent=1) + "\n")
            os.replace(partial, self.meta)
        except OSError:
            for path in (writer.path, partial, self.data, self.meta):
                _unlink_quietly(path)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:  # missing, or the disk: either way there is nothing more to do
        return


def _forget_others(directory: str | os.PathLike[str], kept: set[str]) -> None:
    """Remove stored layers this build did not have (only when there are any)."""
    try:
        stale = [n for n in os.listdir(directory) if n.split(".")[0] not in kept]
        for name in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))
    except OSError:
        return
