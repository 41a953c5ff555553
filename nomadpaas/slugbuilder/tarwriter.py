"""Write tar streams fast: walk a tree into checked, normalised entries and encode headers.

tarfile spends most of a slug's packing time outside zlib: `gettarinfo` looks up user and
group names for every file and a float mtime gets every member its own PAX header. This
writer builds the 512-byte ustar headers directly (PAX records only where ustar cannot
say it: long or non-ASCII names, huge sizes, sub-second mtimes), so the same Flask slug
costs about a third of the CPU time.

Rules of reference/buildpacks.md §7 applied while walking (`scan_tree`): symlinks are
stored, never followed; an absolute link, a link leaving the tree and a special file
raise ArchiveError; owners become 0/0 without names; setuid/setgid/sticky and
group/other write bits are dropped. A regular file seen again under another name (same
inode) within one scan becomes a hardlink member to its first name.

Entry order is deterministic: depth first, names sorted, each directory's header before
its contents (GNU tar's ``--sort=name`` order).
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable

from nomadpaas.frozen import Frozen

__all__ = [
    "BLOCK_BYTES",
    "EOF_MARKER",
    "RECORD_BYTES",
    "ArchiveError",
    "Entry",
    "TarStream",
    "encode_header",
    "end_of_archive",
    "entry_for",
    "resolve_hardlinks",
    "scan_tree",
]

BLOCK_BYTES = 512
#: tar and GNU tar pad the archive to 20 blocks; readers do not need it, we keep the habit.
RECORD_BYTES = 20 * BLOCK_BYTES
#: Two zero blocks end a tar archive.
EOF_MARKER = bytes(2 * BLOCK_BYTES)
FILE, HARDLINK, SYMLINK, DIR = b"0", b"1", b"2", b"5"
_DROPPED_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWGRP | stat.S_IWOTH
_NS_PER_S = 1_000_000_000
_MAX_OCTAL_11 = 8**11  # largest value + 1 of an 11-digit octal field (size, mtime)
_PAX_NAME = b"././@PaxHeader"
_USTAR_MAGIC = b"ustar\x0000"
_ZERO_ID = b"0000000\x00"
_FLUSH_BYTES = 1024 * 1024  # tar bytes handed to the compressor at once


class ArchiveError(ValueError):
    """A tree cannot be packed, or a tarball is unsafe or too large; says which member."""


class Entry(Frozen):
    """One member to write, as found on disk (mode already normalised).

    `rel` is the path under the scanned root (posix); `link` a symlink's target or, for a
    hardlink, the `rel` of the earlier regular entry; `path` where a file's bytes are;
    `inode` (device, inode) of a regular file with several names, else None.
    """

    __match_args__ = ("rel", "kind", "mode", "size", "mtime_ns", "link", "path", "inode")
    __slots__ = __match_args__
    rel: str
    kind: bytes
    mode: int
    size: int
    mtime_ns: int
    link: str
    path: str
    inode: tuple[int, int] | None

    def __init__(
        self,
        rel: str,
        kind: bytes,
        mode: int,
        size: int,
        mtime_ns: int,
        link: str,
        path: str,
        inode: tuple[int, int] | None = None,
    ) -> None:
        # One per file of a slug: set directly rather than through `init_fields`.
        _set(self, "rel", rel)
        _set(self, "kind", kind)
        _set(self, "mode", mode)
        _set(self, "size", size)
        _set(self, "mtime_ns", mtime_ns)
        _set(self, "link", link)
        _set(self, "path", path)
        _set(self, "inode", inode)


_set = object.__setattr__


def scan_tree(
    root: str, rel_base: str = "", *, exclude: frozenset[str] = frozenset()
) -> list[Entry]:
    """Every entry below directory `root` (not `root` itself), in archive order.

    `rel_base` is `root`'s own path in the archive tree ("" for the top), used for the
    entries' `rel` and for judging where symlinks point. `exclude` names are skipped in
    `root` only. Files with several names stay FILE entries: `resolve_hardlinks` decides,
    per archive part, which become hardlinks.
    Raises ArchiveError for an absolute or escaping symlink and for special files.
    """
    entries: list[Entry] = []
    _walk(root, rel_base, exclude, entries)
    return entries


def entry_for(path: str, rel: str) -> Entry:
    """The entry of one path (a directory's own header, a single file)."""
    return _entry(path, rel, os.lstat(path))


def resolve_hardlinks(entries: list[Entry]) -> list[Entry]:
    """`entries` with every later name of a multiply-linked file as a HARDLINK to the first.

    Scoped to the list given, so each gzip member of a layered slug stands on its own.
    """
    first: dict[tuple[int, int], str] = {}
    out: list[Entry] = []
    for e in entries:
        if e.inode is not None and first.setdefault(e.inode, e.rel) != e.rel:
            out.append(Entry(e.rel, HARDLINK, e.mode, 0, e.mtime_ns, first[e.inode], e.path))
        else:
            out.append(e)
    return out


def _walk(directory: str, rel_dir: str, exclude: frozenset[str], out: list[Entry]) -> None:
    with os.scandir(directory) as it:
        found = sorted((e.name, e.path) for e in it if e.name not in exclude)
    for name, path in found:
        rel = f"{rel_dir}/{name}" if rel_dir else name
        entry = _entry(path, rel, os.lstat(path))
        out.append(entry)
        if entry.kind == DIR:
            _walk(path, rel, frozenset(), out)


def _entry(path: str, rel: str, st: os.stat_result) -> Entry:
    mode = stat.S_IMODE(st.st_mode) & ~_DROPPED_BITS
    if stat.S_ISREG(st.st_mode):
        inode = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
        return Entry(rel, FILE, mode, st.st_size, st.st_mtime_ns, "", path, inode)
    if stat.S_ISDIR(st.st_mode):
        return Entry(rel, DIR, mode, 0, st.st_mtime_ns, "", path)
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        if target.startswith("/"):
            raise ArchiveError(
                f"{rel} is a symlink to the absolute path {target}: a slug must not point at "
                "the build machine (make it relative, or recreate it at start in .profile.d)"
            )
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        if resolved == ".." or resolved.startswith("../"):
            raise ArchiveError(f"{rel} is a symlink leaving the app directory ({target})")
        return Entry(rel, SYMLINK, mode, 0, st.st_mtime_ns, target, path)
    raise ArchiveError(f"{rel} is a special file (device, FIFO or socket); remove it")


def encode_header(name: str, entry: Entry, linkname: str, mtime_ns: int) -> bytes:
    """The header block(s) of `entry` stored as `name` (dirs: give the trailing "/").

    `mtime_ns` is written as whole seconds in ustar when it is a whole second in range,
    else exactly as a PAX ``mtime`` record (GNU tar's ``sec.nanoseconds`` form).
    """
    pax: list[tuple[bytes, bytes]] = []
    name_b, prefix_b = _ustar_name(name, pax)
    link_b = _ustar_text(linkname, b"linkpath", 100, pax)
    size = entry.size
    if size >= _MAX_OCTAL_11:
        pax.append((b"size", b"%d" % size))
        size = 0
    seconds, ns = divmod(mtime_ns, _NS_PER_S)
    if ns or not 0 <= seconds < _MAX_OCTAL_11:
        pax.append((b"mtime", _exact_time(mtime_ns)))
        seconds = min(max(seconds, 0), _MAX_OCTAL_11 - 1)
    block = _ustar_block(name_b, prefix_b, entry.mode, size, seconds, entry.kind, link_b)
    if not pax:
        return block
    records = b"".join(_pax_record(key, value) for key, value in pax)
    head = _ustar_block(_PAX_NAME, b"", 0o644, len(records), 0, b"x", b"")
    return head + records + bytes(-len(records) % BLOCK_BYTES) + block


def end_of_archive(length: int) -> bytes:
    """The end-of-archive blocks plus padding to a whole record, after `length` bytes."""
    return EOF_MARKER + bytes(-(length + len(EOF_MARKER)) % RECORD_BYTES)


def _ustar_name(name: str, pax: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """(name, prefix) fields; ustar splits a long ASCII path at a "/" before PAX is needed."""
    if name.isascii():
        raw = name.encode("ascii")
        if len(raw) <= 100:
            return raw, b""
        # ustar keeps a long path as prefix (<= 155 bytes) "/" name (1..100 bytes).
        cut = raw.find(b"/", max(len(raw) - 101, 1))
        if 0 < cut <= 155 and cut < len(raw) - 1:
            return raw[cut + 1 :], raw[:cut]
    return _pax_text(name, b"path", pax)[:100], b""


def _ustar_text(text: str, key: bytes, limit: int, pax: list[tuple[bytes, bytes]]) -> bytes:
    if text.isascii() and len(text) <= limit:
        return text.encode("ascii")
    return _pax_text(text, key, pax)[:limit]


def _pax_text(text: str, key: bytes, pax: list[tuple[bytes, bytes]]) -> bytes:
    """Record `text` as a PAX value; undecodable file names go raw, as tarfile does."""
    try:
        value = text.encode("utf-8")
    except UnicodeEncodeError:
        value = text.encode("utf-8", "surrogateescape")
        if (b"hdrcharset", b"BINARY") not in pax:
            pax.insert(0, (b"hdrcharset", b"BINARY"))
    pax.append((key, value))
    return value


def _exact_time(ns_total: int) -> bytes:
    sign = b"-" if ns_total < 0 else b""
    seconds, ns = divmod(abs(ns_total), _NS_PER_S)
    return sign + (b"%d.%09d" % (seconds, ns) if ns else b"%d" % seconds)


def _pax_record(key: bytes, value: bytes) -> bytes:
    """``"<len> <key>=<value>\\n"`` where <len> counts the whole record, itself included."""
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(b"%d" % length) + len(body) != length:
        length += 1
    return b"%d" % length + body


def _ustar_block(
    name: bytes, prefix: bytes, mode: int, size: int, mtime: int, kind: bytes, link: bytes
) -> bytes:
    # Same layout and field formats as tarfile's ustar/PAX headers (NUL-terminated octal).
    block = bytearray(BLOCK_BYTES)
    block[0 : len(name)] = name
    block[100:108] = b"%07o\x00" % mode
    block[108:116] = _ZERO_ID  # uid
    block[116:124] = _ZERO_ID  # gid
    block[124:136] = b"%011o\x00" % size
    block[136:148] = b"%011o\x00" % mtime
    block[148:156] = b"        "  # the checksum is computed with its own field as spaces
    block[156:157] = kind
    block[157 : 157 + len(link)] = link
    block[257:265] = _USTAR_MAGIC
    # devmajor/devminor stay empty: no device files are packed (tarfile does the same).
    block[345 : 345 + len(prefix)] = prefix
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


class TarStream:
    """Encodes entries as tar bytes into `sink` in ~1 MiB pieces; counts what it wrote.

    With `exact_mtimes` every mtime is kept to the nanosecond (PAX records where ustar
    cannot hold it): for archives read back to restore a tree as it was (the build cache).
    Without, regular files keep whole seconds and directories and symlinks get mtime 0:
    for slugs, where a directory's mtime says nothing and would only make equal trees
    pack differently. `clamp_ns` then caps files' mtimes (SOURCE_DATE_EPOCH's rule).
    """

    def __init__(
        self, sink: Callable[[bytes], object], *, exact_mtimes: bool, clamp_ns: int | None = None
    ) -> None:
        self._sink = sink
        self._exact = exact_mtimes
        self._clamp = clamp_ns
        self._buffer = bytearray()
        self.length = 0  # tar bytes written so far (including buffered)

    def add(self, arc_root: str, entries: list[Entry]) -> None:
        """Write `entries` named ``<arc_root>/<rel>`` (arc_root "." or "./app")."""
        for entry in entries:
            name = f"{arc_root}/{entry.rel}" if entry.rel else arc_root
            if entry.kind == DIR:
                name += "/"
            link = f"{arc_root}/{entry.link}" if entry.kind == HARDLINK else entry.link
            self._put(encode_header(name, entry, link, self._mtime(entry)))
            if entry.kind == FILE and entry.size:
                self._put_file(entry)

    def end(self) -> None:
        """Write the end-of-archive blocks and record padding, then flush."""
        self._put(end_of_archive(self.length))
        self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._sink(bytes(self._buffer))
            self._buffer.clear()

    def _mtime(self, entry: Entry) -> int:
        if self._exact:
            return entry.mtime_ns
        if entry.kind in (DIR, SYMLINK):
            return 0
        mtime = entry.mtime_ns if self._clamp is None else min(entry.mtime_ns, self._clamp)
        return mtime - mtime % _NS_PER_S

    def _put(self, data: bytes) -> None:
        self._buffer += data
        self.length += len(data)
        if len(self._buffer) >= _FLUSH_BYTES:
            self.flush()

    def _put_file(self, entry: Entry) -> None:
        left = entry.size
        # O_NOFOLLOW: the file was a regular file when scanned; never follow a swapped link.
        with open(os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
            while left:
                chunk = f.read(min(left, _FLUSH_BYTES))
                if not chunk:
                    raise ArchiveError(f"{entry.rel} shrank while it was being packed")
                self._put(chunk)
                left -= len(chunk)
        self._put(bytes(-entry.size % BLOCK_BYTES))
