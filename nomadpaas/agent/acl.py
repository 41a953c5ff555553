"""The management token: read it from a file, or generate and store it (mode 0600);
mirrors the bootstrap token of nomad/acl_endpoint.go's Bootstrap, for one machine.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

TOKEN_FILE_MODE = 0o600  # the token grants everything: owner-only


class ACLTokenFileError(Exception):
    """The token file exists but holds no token."""


def load_or_create_management_token(path: Path) -> str:
    """The SecretID stored in `path`; creates it atomically (uuid4, 0600) when missing."""
    if path.exists():
        token = path.read_text().strip()
        if not token:
            raise ACLTokenFileError(f"ACL token file {path} is empty")
        return token
    token = str(uuid.uuid4())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, TOKEN_FILE_MODE)
    try:
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails if another agent created the file meanwhile: then its token wins.
        os.link(tmp, path)
    except FileExistsError:
        return load_or_create_management_token(path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return token


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
