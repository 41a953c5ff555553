"""Builds crafted tar and zip archives for the unpacking tests."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    """One member to write: kind is file, dir, symlink, hardlink, chr or fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    link: str = ""
    mode: int = 0o644
    size: int | None = None  # declared size override (header only)


def file(name: str, data: bytes = b"x", mode: int = 0o644) -> Entry:
    return Entry(name, "file", data, mode=mode)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, "symlink", link=target, mode=0o777)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, "hardlink", link=target)


def directory(name: str) -> Entry:
    return Entry(name, "dir", mode=0o755)


_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chr": tarfile.CHRTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def make_tar(path: Path, entries: list[Entry], compression: str = "gz") -> Path:
    """Write a tar (compression "", gz, bz2 or xz) holding exactly `entries`, in order."""
    with tarfile.open(path, f"w:{compression}", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = _TAR_TYPES[e.kind]
            info.mode = e.mode
            info.linkname = e.link
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return path


def make_tar_declaring(path: Path, name: str, declared: int) -> Path:
    """An uncompressed tar whose single header claims `declared` bytes (no data follows)."""
    info = tarfile.TarInfo(name)
    info.size = declared
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    path.write_bytes(header + b"\0" * 1024)
    return path


def make_zip(path: Path, entries: list[Entry]) -> Path:
    """Write a zip; symlinks carry S_IFLNK in external_attr and their target as content."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for e in entries:
            info = zipfile.ZipInfo(
                e.name + ("/" if e.kind == "dir" and not e.name.endswith("/") else "")
            )
            info.create_system = 3  # Unix, so external_attr carries the mode
            kind_bits = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK,
                         "fifo": stat.S_IFIFO, "chr": stat.S_IFCHR}[e.kind]  # fmt: skip
            info.external_attr = (kind_bits | e.mode) << 16
            zf.writestr(info, e.link.encode() if e.kind == "symlink" else e.data)
    return path
