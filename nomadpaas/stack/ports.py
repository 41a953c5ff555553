"""Loopback ports for the embedded stack: pick free ones, and tell who listens on one.

Picking a port and the server binding it are two steps, so another program can take it
in between; and an orphan server from an earlier run can answer on "our" port while our
fresh server failed to bind (tooling.md §7). So readiness also asks whether the answering
socket belongs to the process we started (`listened_by`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterable
from pathlib import Path

from nomadpaas.errors import InvalidInput

__all__ = ["LOOPBACK", "choose_port", "is_free", "listened_by"]

LOOPBACK = "127.0.0.1"
_PROC = Path("/proc")
#: /proc/net/tcp state code of a listening socket.
_TCP_LISTEN = "0A"


def is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when a server could bind `host:port` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # The servers set SO_REUSEADDR too, so a port in TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _any_free(host: str, taken: Iterable[int]) -> int:
    avoid = set(taken)
    for _ in range(50):  # the kernel rarely hands out the same port twice in a row
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port
    raise OSError("no free loopback port found")


def choose_port(
    flag: str,
    requested: int | None,
    recorded: int | None,
    default: int,
    taken: Iterable[int] = (),
    host: str = LOOPBACK,
) -> int:
    """The port a server should bind.

    Parameters:
        flag: the CLI flag that set `requested`, for the error message.
        requested: the user's choice; 0 means any free port, None means "you choose".
        recorded: the port this server had last time (kept stable across restarts so
            exported NOMAD_ADDR and friends stay valid).
        default: the well-known port (4646 for Nomad, 8500 for Consul…).
        taken: ports already given to the other servers of this stack.
    """
    taken = set(taken)
    if requested is not None and requested != 0:
        if requested in taken or not is_free(requested, host):
            raise InvalidInput(
                f"Port {requested} on {host} is in use, so {flag} {requested} cannot be used.",
                hint=f"Stop what listens there, or pass {flag} 0 to pick a free port.",
            )
        return requested
    if requested is None:
        for candidate in (recorded, default):
            if candidate and candidate not in taken and is_free(candidate, host):
                return candidate
    return _any_free(host, taken)


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP `port` (IPv4 and IPv6), from /proc/net."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == _TCP_LISTEN and int(cols[1].split(":")[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def _family(pid: int) -> list[int]:
    """`pid` and its descendants (a server may bind in a worker it forks)."""
    seen: list[int] = []
    todo = [pid]
    while todo and len(seen) < 256:
        current = todo.pop()
        seen.append(current)
        with contextlib.suppress(OSError):
            for task in (_PROC / str(current) / "task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return seen


def listened_by(pid: int, port: int) -> bool | None:
    """Whether `pid` (or a child of it) holds the socket listening on `port`.

    None when it cannot be known (no /proc, or another user's process).
    """
    if not (_PROC / "net" / "tcp").exists():
        return None
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for member in _family(pid):
        fd_dir = _PROC / str(member) / "fd"
        try:
            names = os.listdir(fd_dir)
        except PermissionError:
            return None
        except OSError:
            continue
        for name in names:
            with contextlib.suppress(OSError):
                if os.readlink(fd_dir / name) in wanted:
                    return True
    return False
