"""Unpacks an archive into a directory, refusing unsafe members; mirrors go-getter's decompress.go.

Used for artifacts and for slugs. Every member is validated first (`archivecheck`), and only
then is anything written, so a refused archive leaves no trace outside (or inside) the
destination. Tar extraction additionally runs through `tarfile.data_filter` plus our own
on-disk checks, and setuid/setgid/sticky bits are stripped afterwards.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import stat
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from nomadpaas.agent.client.getter.archivecheck import (
    ArchiveError,
    ArchiveLimits,
    Kind,
    Member,
    MemberCheck,
    quoted,
)

__all__ = [
    "ARCHIVE_FORMATS",
    "ArchiveError",
    "ArchiveLimits",
    "detect_format",
    "unpack",
]

# go-getter's decompressor keys; the longest matching URL-path suffix wins.
ARCHIVE_FORMATS = (
    "tar.gz", "tgz", "tar.bz2", "tbz2", "tar.xz", "txz", "tar.zst", "tzst",
    "zip", "gz", "bz2", "xz", "zst", "tar",
)  # fmt: skip
_TAR_COMPRESSION = {
    "tar": "",
    "tar.gz": "gz",
    "tgz": "gz",
    "tar.bz2": "bz2",
    "tbz2": "bz2",
    "tar.xz": "xz",
    "txz": "xz",
    "tar.zst": "zst",
    "tzst": "zst",
}
_SINGLE_FILE = ("gz", "bz2", "xz", "zst")
_ZSTD_FORMATS = ("tar.zst", "tzst", "zst")
COPY_CHUNK_BYTES = 1024 * 1024
MAX_ZIP_LINK_BYTES = 4096  # a zip symlink's target is stored as its content
SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
# tarfile reads a PAX or GNU long-name header's data in one read() of its declared size;
# no legitimate header comes near this, and capping it stops a memory bomb.
MAX_SINGLE_READ_BYTES = 16 * 1024 * 1024


def detect_format(url_path: str) -> str | None:
    """The archive format named by a URL path's suffix (longest match), or None."""
    matches = [f for f in ARCHIVE_FORMATS if url_path.endswith("." + f)]
    return max(matches, key=len) if matches else None


def unpack(
    archive: Path,
    dest: Path,
    fmt: str,
    *,
    dest_is_file: bool = False,
    limits: ArchiveLimits | None = None,
) -> None:
    """Unpack `archive` (format `fmt`, one of ARCHIVE_FORMATS) into directory `dest`.

    With `dest_is_file`, `dest` is a file path: single-file compressors (gz, bz2, xz)
    decompress to it, and tar/zip archives must hold exactly one regular file.
    Raises ArchiveError, whose message names the offending member.
    """
    limits = limits or ArchiveLimits()
    if fmt not in ARCHIVE_FORMATS:
        raise ArchiveError(f"unsupported archive format {quoted(fmt)}")
    if fmt in _ZSTD_FORMATS and sys.version_info < (3, 14):
        raise ArchiveError(
            f"archive format {quoted(fmt)} is not supported: this Python has no zstd module"
        )
    if fmt in _SINGLE_FILE:
        if not dest_is_file:
            raise ArchiveError(
                f"{_compressor_name(fmt)}-compressed files can only unarchive to a single file"
            )
        _decompress_single(archive, dest, fmt, limits)
    elif fmt == "zip":
        _unpack_zip(archive, dest, dest_is_file, limits)
    else:
        _unpack_tar(archive, dest, _TAR_COMPRESSION[fmt], dest_is_file, limits)


def _compressor_name(fmt: str) -> str:
    return {"gz": "gzip", "bz2": "bzip2", "xz": "xz", "zst": "zstd"}[fmt]


def _open_single(archive: Path, fmt: str) -> IO[bytes]:
    if fmt == "":
        return open(archive, "rb")
    if fmt == "gz":
        return gzip.GzipFile(archive, "rb")  # type: ignore[return-value]
    if fmt == "bz2":
        return bz2.open(archive, "rb")
    if fmt == "xz":
        return lzma.open(archive, "rb")
    zstd = __import__("compression.zstd", fromlist=["open"])  # Python 3.14+
    stream: IO[bytes] = zstd.open(archive, "rb")
    return stream


def _copy_capped(src: IO[bytes], dst: IO[bytes], cap: int, what: str) -> None:
    written = 0
    while chunk := src.read(COPY_CHUNK_BYTES):
        written += len(chunk)
        if written > cap:
            raise ArchiveError(f"{what} is too large: more than {cap} bytes uncompressed")
        dst.write(chunk)


def _write_file_atomically(dest: Path, fill: Callable[[IO[bytes]], None]) -> None:
    """Write via a temporary sibling so a failure never leaves a half file at `dest`."""
    if dest.is_symlink():
        raise ArchiveError(f"destination {quoted(str(dest))} is a symlink")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.unpacking")
    try:
        with open(tmp, "wb") as out:
            fill(out)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _decompress_single(archive: Path, dest: Path, fmt: str, limits: ArchiveLimits) -> None:
    cap = min(limits.max_member_bytes, limits.max_total_bytes)

    def fill(out: IO[bytes]) -> None:
        try:
            with _open_single(archive, fmt) as src:
                _copy_capped(src, out, cap, f"{_compressor_name(fmt)}-compressed file")
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise ArchiveError(f"error decompressing {archive.name}: {exc}") from exc

    _write_file_atomically(dest, fill)


# ---- tar -------------------------------------------------------------------------------


def _tar_kind(info: tarfile.TarInfo) -> Kind | None:
    if info.issparse():
        return None
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    return None  # character/block devices, FIFOs, unknown types


class _CappedReader:
    """A seekable stream for tarfile that refuses any single huge read (header bombs)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > MAX_SINGLE_READ_BYTES:
            raise ArchiveError("archive has a header larger than 16 MiB")
        return self.raw.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()


def _unpack_tar(
    archive: Path, dest: Path, compression: str, dest_is_file: bool, limits: ArchiveLimits
) -> None:
    try:
        with (
            _open_single(archive, compression) as raw,
            tarfile.open(fileobj=_CappedReader(raw), mode="r:") as tar,  # type: ignore[call-overload]
        ):
            check = MemberCheck(limits)
            for info in tar:
                check.add(info.name, _tar_kind(info), info.size, info.linkname)
            members = check.finish()
            if dest_is_file:
                _tar_single_file(tar, members, archive, dest, limits)
                return
            dest.mkdir(parents=True, exist_ok=True)
            tar.extractall(dest, filter=_TarFilter(dest, limits))
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError) as exc:
        # FilterError is a TarError; our own checks refuse those members first.
        raise ArchiveError(f"error unpacking {archive.name}: {exc}") from exc
    _strip_special_bits(dest, members)


def _tar_single_file(
    tar: tarfile.TarFile, members: list[Member], archive: Path, dest: Path, limits: ArchiveLimits
) -> None:
    files = [m for m in members if m.kind == "file"]
    if len(files) != 1 or any(m.kind != "file" and m.name for m in members):
        raise ArchiveError(f"expected a single file: {archive.name}")
    info = next(i for i in tar.getmembers() if i.isreg())
    src = tar.extractfile(info)
    assert src is not None  # a regular member always has a file object
    _write_file_atomically(
        dest, lambda out: _copy_capped(src, out, limits.max_member_bytes, "file")
    )


class _TarFilter:
    """`filter=` for extractall: Python's data filter plus checks against the live disk."""

    def __init__(self, dest: Path, limits: ArchiveLimits) -> None:
        self.dest = dest
        self.real_dest = os.path.realpath(dest)
        self.limits = limits

    def __call__(self, info: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        name = "/".join(p for p in info.name.split("/") if p not in ("", "."))
        if name == "":
            return None  # the archive's "./" root entry: dest already exists
        _check_on_disk(self.real_dest, name, info.name)
        return tarfile.data_filter(info, path)


def _check_on_disk(real_dest: str, name: str, raw: str) -> None:
    """Refuse to write through a symlink already on disk (e.g. from an earlier archive)."""
    target = os.path.join(real_dest, name)
    if os.path.islink(target):
        raise ArchiveError(f"archive member {quoted(raw)} would overwrite an existing symlink")
    real_parent = os.path.realpath(os.path.dirname(target))
    if real_parent != real_dest and not real_parent.startswith(real_dest + os.sep):
        raise ArchiveError(f"archive member {quoted(raw)} escapes the destination")


def _strip_special_bits(dest: Path, members: list[Member]) -> None:
    for member in members:
        if not member.name or member.kind == "symlink":
            continue
        path = dest / member.name
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISLNK(mode) and mode & SPECIAL_BITS:
            path.chmod(stat.S_IMODE(mode) & ~SPECIAL_BITS)


# ---- zip -------------------------------------------------------------------------------


def _zip_kind(info: zipfile.ZipInfo) -> Kind | None:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symlink"
    if info.is_dir() or stat.S_ISDIR(mode):
        return "dir"
    if mode == 0 or stat.S_ISREG(mode):  # mode 0: made on a system without Unix modes
        return "file"
    return None


def _zip_link_target(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    if info.file_size > MAX_ZIP_LINK_BYTES:
        raise ArchiveError(
            f"archive member {quoted(info.filename)} has a symlink target that is too long"
        )
    return zf.read(info).decode("utf-8", "surrogateescape")


def _safe_file_mode(zip_mode: int) -> int:
    """What tarfile's data filter does to a file mode: rw for owner, no group/other write."""
    mode = (stat.S_IMODE(zip_mode) or 0o644) & 0o755 | 0o600
    if not mode & stat.S_IXUSR:
        mode &= ~0o111
    return mode


def _unpack_zip(archive: Path, dest: Path, dest_is_file: bool, limits: ArchiveLimits) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            check = MemberCheck(limits)
            infos = zf.infolist()
            for info in infos[: limits.max_members + 1]:
                kind = _zip_kind(info)
                link = _zip_link_target(zf, info) if kind == "symlink" else ""
                check.add(info.filename, kind, info.file_size if kind == "file" else 0, link)
            members = check.finish()
            if dest_is_file:
                regular = [i for i, m in zip(infos, members, strict=True) if m.kind == "file"]
                if len(regular) != 1 or len(members) != 1:
                    raise ArchiveError(f"expected a single file: {archive.name}")
                with zf.open(regular[0]) as src:
                    _write_file_atomically(
                        dest, lambda out: _copy_capped(src, out, limits.max_member_bytes, "file")
                    )
                return
            dest.mkdir(parents=True, exist_ok=True)
            real_dest = os.path.realpath(dest)
            for info, member in zip(infos, members, strict=True):
                if member.name:
                    _extract_zip_member(zf, info, member, dest, real_dest, limits)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError) as exc:
        raise ArchiveError(f"error unpacking {archive.name}: {exc}") from exc


def _extract_zip_member(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    member: Member,
    dest: Path,
    real_dest: str,
    limits: ArchiveLimits,
) -> None:
    _check_on_disk(real_dest, member.name, info.filename)
    path = dest / member.name
    if member.kind == "dir":
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_on_disk(real_dest, member.name, info.filename)  # parents now exist: re-check
    if member.kind == "symlink":
        os.symlink(member.link, path)
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as out, zf.open(info) as src:
        _copy_capped(
            src,
            out,
            min(member.size, limits.max_member_bytes),
            f"archive member {quoted(info.filename)}",
        )
    path.chmod(_safe_file_mode(info.external_attr >> 16))
