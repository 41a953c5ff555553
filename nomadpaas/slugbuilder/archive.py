"""Pack a directory into a gzip tarball and extract untrusted tarballs safely.

Used for source tarballs and build-cache tarballs (slugs are packed in layers by
`layers.pack_slug`, with the same tar writer). The rules follow reference/buildpacks.md §7:

- packing (`tarwriter`) never follows symlinks, refuses absolute links, links leaving the
  tree and special files, normalises owners (0/0, no names) and strips
  setuid/setgid/sticky and group/other write bits; it keeps mtimes to the nanosecond,
  and extracting restores them exactly, so a cache that travelled as a tarball looks
  untouched to whatever compares (size, mtime);
- extracting checks every member *before* writing anything (names, types, link targets,
  member count, sizes), then extracts with tarfile's ``data`` filter into an empty
  directory (the filter alone has known bypasses on this Python, so both are needed).
"""

from __future__ import annotations

import os
import posixpath

from nomadpaas.frozen import Frozen, init_fields
from nomadpaas.slugbuilder.tarwriter import (
    DIR,
    FILE,
    ArchiveError,
    TarStream,
    entry_for,
    resolve_hardlinks,
    scan_tree,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    import tarfile

__all__ = [
    "FAST_GZIP_LEVEL",
    "GZIP_LEVEL",
    "ArchiveError",
    "ExtractLimits",
    "PackStats",
    "extract_tarball",
    "pack_directory",
    "sha256_file",
]

# gzip level 4 for slugs: packing the slug is on every push's path and most of a new
# slug is compressed afresh. The Flask example's slug (2.1 MiB, 255 entries), `pack_slug`
# wall time on 2 threads, medians of 9 interleaved runs: level 6 65 ms 581 KB,
# 5 47 ms 590 KB (+1.5%), 4 36 ms 612 KB (+5%), 1 27 ms 712 KB (+22%); 9 is ~3x level 6
# for -1%. Slugs travel over the LAN from the platform's S3, where 5% more bytes cost far
# less than the 30 ms; `gzmember` deflates on several threads too.
GZIP_LEVEL = 4
# For archives only the build machine reads back (the build cache): time matters, not size.
FAST_GZIP_LEVEL = 1
# Longest member name we accept (bytes); PATH_MAX on Linux is 4096.
MAX_NAME_BYTES = 4096
_READ_CHUNK_BYTES = 1024 * 1024


class ExtractLimits(Frozen):
    """Caps enforced while reading a tarball (tarfile enforces none of them)."""

    __match_args__ = ("max_members", "max_member_bytes", "max_total_bytes")
    __slots__ = __match_args__
    max_members: int
    max_member_bytes: int
    max_total_bytes: int

    def __init__(
        self,
        max_members: int = 200_000,
        max_member_bytes: int = 1024**3,  # 1 GiB, Heroku's compressed slug maximum as a bound
        max_total_bytes: int = 2 * 1024**3,  # 2 GiB uncompressed
    ) -> None:
        init_fields(
            self,
            max_members=max_members,
            max_member_bytes=max_member_bytes,
            max_total_bytes=max_total_bytes,
        )


class PackStats(Frozen):
    """What `pack_directory` wrote."""

    __match_args__ = ("files", "uncompressed_bytes", "compressed_bytes", "sha256")
    __slots__ = __match_args__
    files: int
    uncompressed_bytes: int
    compressed_bytes: int
    sha256: str

    def __init__(
        self, files: int, uncompressed_bytes: int, compressed_bytes: int, sha256: str
    ) -> None:
        init_fields(
            self,
            files=files,
            uncompressed_bytes=uncompressed_bytes,
            compressed_bytes=compressed_bytes,
            sha256=sha256,
        )


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    import hashlib  # OpenSSL's start: not before a build needs a digest

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def pack_directory(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    prefix: str = "",
    exclude: tuple[str, ...] = (".git",),
    compresslevel: int = GZIP_LEVEL,
) -> PackStats:
    """Write `source`'s tree to `dest` (one tar.gz member), entries named ``./<prefix>/…``.

    Every mtime is kept to the nanosecond (`extract_tarball` restores it exactly), so a
    tree packed and extracted again (the build cache) looks unchanged to anything that
    compares (size, mtime): the slug layers' fingerprints, the task's cache check.

    Parameters:
        source: directory to pack; symlinks inside are stored as links, never followed.
        dest: the tarball to create (overwritten).
        prefix: e.g. ``"app"`` for Heroku's ``./app/`` layout; ``""`` for none.
        exclude: top-level names to leave out.
        compresslevel: gzip level, 1 (fastest) to 9 (smallest).
    Raises ArchiveError for an absolute symlink, a link leaving the tree or a special file.
    """
    import hashlib  # not imported while the build task starts (see compile.py)

    from nomadpaas.slugbuilder.gzmember import GzipMember, deflate_pool

    root = os.path.realpath(source)
    arc_root = "./" + prefix.strip("/") if prefix.strip("/") else "."
    entries = [entry_for(root, "")] if arc_root != "." else []
    entries = resolve_hardlinks(entries + scan_tree(root, exclude=frozenset(exclude)))
    digest = hashlib.sha256()
    pool = deflate_pool()
    with open(dest, "wb") as raw:

        def write(data: bytes) -> None:
            raw.write(data)
            digest.update(data)

        try:
            member = GzipMember(write, compresslevel, pool)
            stream = TarStream(member.write, exact_mtimes=True)
            stream.add(arc_root, entries)
            stream.end()
            member.close()
        finally:
            if pool is not None:
                pool.shutdown()
    return PackStats(
        files=sum(1 for e in entries if e.kind != DIR),
        uncompressed_bytes=sum(e.size for e in entries if e.kind == FILE),
        compressed_bytes=os.stat(dest).st_size,
        sha256=digest.hexdigest(),
    )


def extract_tarball(
    tarball: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    limits: ExtractLimits | None = None,
    allow_symlinks: bool = True,
) -> int:
    """Check every member of `tarball`, then extract it into the empty (or new) dir `dest`.

    Returns the number of members. Raises ArchiveError naming the first bad member; nothing
    is written in that case.
    """
    # Not at import: tarfile (shutil, bz2, lzma, copy…) is ~5 ms of the build task's
    # start, whose pushed source plaintar.py extracts without it.
    import tarfile

    limits = limits or ExtractLimits()
    dest = os.fspath(dest)
    if os.path.exists(dest) and os.listdir(dest):
        raise ArchiveError(f"refusing to extract into non-empty directory {dest}")
    os.makedirs(dest, exist_ok=True)
    try:
        with tarfile.open(tarball, mode="r:*") as tar:
            members = _checked_members(tar, limits, allow_symlinks)
            tar.extractall(dest, members=members, filter="data")
        _restore_exact_mtimes(dest, members)
    except (tarfile.TarError, EOFError, OSError) as exc:
        name = os.path.basename(tarball)
        raise ArchiveError(f"{name} is not a readable tarball: {exc}") from exc
    return len(members)


def _restore_exact_mtimes(dest: str, members: list[tarfile.TarInfo]) -> None:
    """Set the nanosecond mtimes of PAX records, which tarfile rounds through a float,
    and symlinks' mtimes, which it leaves at "now" (a tree packed and extracted again
    then looks unchanged to whatever compares mtimes)."""
    for info in members:
        exact = info.pax_headers.get("mtime", "")
        if "." in exact:
            ns = _parse_pax_time(exact)
        elif info.issym():
            ns = int(info.mtime) * 1_000_000_000
        else:
            continue
        if ns is not None:
            os.utime(os.path.join(dest, info.name), ns=(ns, ns), follow_symlinks=False)


def _parse_pax_time(text: str) -> int | None:
    negative = text.startswith("-")
    seconds, _, fraction = text.lstrip("-").partition(".")
    if not (seconds.isdigit() and (fraction.isdigit() or not fraction)):
        return None
    ns = int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9])
    return -ns if negative else ns


def _checked_members(
    tar: tarfile.TarFile, limits: ExtractLimits, allow_symlinks: bool
) -> list[tarfile.TarInfo]:
    members: list[tarfile.TarInfo] = []
    regular: set[str] = set()
    total = 0
    for info in tar:
        if len(members) >= limits.max_members:
            raise ArchiveError(f"more than {limits.max_members} members")
        name = _safe_name(info.name)
        if info.issparse():
            raise ArchiveError(f"{name}: sparse members are not accepted")
        if info.isreg():
            if info.size > limits.max_member_bytes:
                raise ArchiveError(f"{name}: {info.size} bytes is over the per-file limit")
            total += info.size
            if total > limits.max_total_bytes:
                raise ArchiveError(f"more than {limits.max_total_bytes} bytes uncompressed")
            regular.add(name)
        elif info.issym():
            if not allow_symlinks:
                raise ArchiveError(f"{name}: symlinks are not accepted here")
            target = info.linkname
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                raise ArchiveError(f"{name}: symlink target {target!r} leaves the archive")
        elif info.islnk():
            if _safe_name(info.linkname) not in regular:
                raise ArchiveError(f"{name}: hardlink to {info.linkname!r}, not an earlier file")
        elif not info.isdir():
            raise ArchiveError(f"{name}: special files are not accepted")
        members.append(info)
    return members


def _safe_name(name: str) -> str:
    if not name or "\x00" in name or len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise ArchiveError(f"bad member name {name[:80]!r}")
    if name.startswith("/") or any(part == ".." for part in name.split("/")):
        raise ArchiveError(f"{name}: member path leaves the destination")
    return posixpath.normpath(name)
