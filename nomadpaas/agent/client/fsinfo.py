"""ls, stat, cat and readat over an allocation dir; mirrors client/allocdir/alloc_dir.go.

Answers `/v1/client/fs/{ls,stat,cat,readat}/:alloc` without HTTP. File info is Nomad's
`AllocFileInfo` JSON (`Name`, `IsDir`, `Size`, `FileMode` as Go prints it, `ModTime` as
RFC3339Nano, `ContentType` sniffed like Go's http.DetectContentType for files).
Paths are confined to the allocation dir, also through symlinks.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nomadpaas.agent.client.fs import FSError, resolve_alloc_path

__all__ = ["cat", "go_file_mode", "list_dir", "read_at", "stat_path"]

SNIFF_BYTES = 512  # what Go's DetectContentType looks at
READ_CHUNK_BYTES = 64 * 1024
_MAGIC = (
    (b"\x1f\x8b\x08", "application/x-gzip"),
    (b"PK\x03\x04", "application/zip"),
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"BZh", "application/x-bzip2"),
)
# Go's FileMode.String type letters, in its order: "dalTLDpSugct?"
_TYPE_LETTERS = (
    (stat.S_IFDIR, "d"),
    (stat.S_IFLNK, "L"),
    (stat.S_IFBLK, "D"),
    (stat.S_IFCHR, "D"),
    (stat.S_IFIFO, "p"),
    (stat.S_IFSOCK, "S"),
)


def go_file_mode(mode: int) -> str:
    """A mode as Go's `os.FileMode.String()` prints it (`-rw-r--r--`, `drwxr-xr-x`)."""
    prefix = ""
    fmt = stat.S_IFMT(mode)
    for bit, letter in _TYPE_LETTERS:
        if fmt == bit:
            prefix += letter
    if mode & stat.S_ISUID:
        prefix += "u"
    if mode & stat.S_ISGID:
        prefix += "g"
    if fmt == stat.S_IFCHR:
        prefix += "c"
    if mode & stat.S_ISVTX:
        prefix += "t"
    perms = "".join(ch if mode & (1 << (8 - i)) else "-" for i, ch in enumerate("rwxrwxrwx"))
    return (prefix or "-") + perms


def go_time(ts_ns: int) -> str:
    """RFC3339Nano in UTC: trailing zeros of the fraction dropped, as Go does."""
    seconds, ns = divmod(ts_ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f".{ns:09d}".rstrip("0") if ns else ""
    return f"{base}{frac}Z"


def content_type(head: bytes) -> str:
    """A small subset of Go's http.DetectContentType."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the 512-byte mark
            return "application/octet-stream"
        text = head[: exc.start].decode("utf-8")
    if any(ord(c) < 0x20 and c not in "\t\n\r\x0c\x1b" for c in text):
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


def _info(path: Path, name: str) -> dict[str, Any]:
    st = path.lstat()
    is_dir = stat.S_ISDIR(st.st_mode)
    ctype = ""
    if stat.S_ISREG(st.st_mode):
        try:
            with open(path, "rb") as f:
                ctype = content_type(f.read(SNIFF_BYTES))
        except OSError:
            ctype = "application/octet-stream"
    return {
        "Name": name,
        "IsDir": is_dir,
        "Size": st.st_size,
        "FileMode": go_file_mode(st.st_mode),
        "ModTime": go_time(st.st_mtime_ns),
        "ContentType": ctype,
    }


def _existing(alloc_dir: Path, rel: str) -> Path:
    path = resolve_alloc_path(alloc_dir, rel)
    if not os.path.lexists(path):
        raise FSError(f"stat {rel}: no such file or directory", 404)
    return path


def stat_path(alloc_dir: Path, rel: str) -> dict[str, Any]:
    """AllocFileInfo for one path (`/` or "" is the allocation dir itself)."""
    path = _existing(alloc_dir, rel or "/")
    return _info(path, path.name if rel.strip("/") else "/")


def list_dir(alloc_dir: Path, rel: str) -> list[dict[str, Any]]:
    """AllocFileInfo for each entry of a directory, sorted by name as Go's ReadDir does."""
    path = _existing(alloc_dir, rel or "/")
    if not path.is_dir():
        raise FSError(f"readdirent {rel}: not a directory", 400)
    return [_info(entry, entry.name) for entry in sorted(path.iterdir(), key=lambda p: p.name)]


def read_at(alloc_dir: Path, rel: str, offset: int = 0, limit: int = -1) -> Iterator[bytes]:
    """The bytes of a file from `offset`, at most `limit` (negative: to the end).

    The file is opened (and errors raised) before the iterator is returned, so an HTTP
    layer can still answer with an error code.
    """
    path = _existing(alloc_dir, rel)
    if path.is_dir():
        raise FSError(f'file "{rel}" is a directory', 400)
    if offset < 0:
        raise FSError("offset must be non-negative", 400)
    f = open(path, "rb")  # noqa: SIM115 - closed by the generator below
    f.seek(offset)
    return _chunks(f, limit)


def _chunks(f: Any, limit: int) -> Iterator[bytes]:
    with f:
        left = limit
        while left != 0:
            data = f.read(READ_CHUNK_BYTES if left < 0 else min(READ_CHUNK_BYTES, left))
            if not data:
                return
            left -= len(data) if left > 0 else 0
            yield data


def cat(alloc_dir: Path, rel: str) -> Iterator[bytes]:
    """The whole file."""
    return read_at(alloc_dir, rel)
