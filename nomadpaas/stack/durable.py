"""Durable file writes of the S3 data directory: synced data files and JSON records.

What `s3persist.ObjectStore` commits with: a file's bytes are made durable with
fdatasync (its size, not its timestamps), a record is created in place (O_EXCL) or
replaced whole by renaming a synced temporary over it, and a directory is fsync'ed to
make its entries (creations, renames, unlinks) durable. Temporaries carry `TMP_MARK` in
their names so that the store's `load()` can sweep those a crash left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TMP_MARK",
    "create_json",
    "fsync_dir",
    "remove_tree",
    "write_json_atomic",
    "write_synced",
]

#: Marks a temporary record in its file name (`<name>.tmp-<uuid>`).
TMP_MARK = ".tmp-"

#: Makes a file's bytes durable, with the metadata needed to read them back (its size)
#: but not its timestamps: one journal write less than fsync where that is all it adds.
#: macOS has no fdatasync.
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (creations, renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, write_data: Callable[[IO[bytes]], object]) -> None:
    """Write a new file at `path` with `write_data` and fdatasync it; nothing left there
    if that fails."""
    try:
        with open(path, "wb") as f:
            write_data(f)
            f.flush()
            _datasync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def create_json(path: Path, data: dict[str, Any]) -> bool:
    """Write a new file at `path` in place and fsync it; False if `path` exists.

    For a key with no record, a temporary and a rename buy nothing: there is no old
    record to keep whole, and a crash mid-write leaves a torn file that the store's `load()`
    cannot parse and removes. Without the rename, the directory fsync that follows has
    nothing left to commit on a journaling file system (ext4, xfs): one flush less.
    """
    payload = _json_bytes(data)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    try:
        with open(fd, "wb") as f:
            f.write(payload)
            f.flush()
            _datasync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return True


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` with `data` whole: a fsync'ed temporary renamed over it, then the
    directory fsync'ed (the commit point)."""
    payload = _json_bytes(data)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{uuid.uuid4().hex}")
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        _datasync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _json_bytes(data: dict[str, Any]) -> bytes:
    """A record as written: sorted keys, ASCII-only (non-ASCII escaped), so UTF-8."""
    return json.dumps(data, sort_keys=True).encode("ascii")


def remove_tree(path: Path) -> None:
    """Remove the directory `path` and everything below it (gone already is fine)."""
    with contextlib.suppress(FileNotFoundError):
        for child in path.iterdir():
            if child.is_dir():
                remove_tree(child)
            else:
                child.unlink(missing_ok=True)
        path.rmdir()
