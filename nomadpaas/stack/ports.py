"""Loopback ports for the embedded stack: pick free ones, and tell who listens on one.

Picking a port and the server binding it are two steps, so another program can take it
in between; and an orphan server from an earlier run can answer on "our" port while our
fresh server failed to bind (tooling.md §7). So readiness also asks whether the answering
socket belongs to the process we started (`listened_by`).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import random
import socket
from collections.abc import Iterable
from pathlib import Path

from nomadpaas.errors import InvalidInput

__all__ = ["LOOPBACK", "choose_port", "free_port", "is_free", "listened_by"]

LOOPBACK = "127.0.0.1"
_PROC = Path("/proc")
#: /proc/net/tcp state code of a listening socket.
_TCP_LISTEN = "0A"
#: Where a server's "any free port" comes from: below Nomad's dynamic port range
#: (20000-32000, handed to tasks) and below the kernel's ephemeral range (32768-60999 by
#: default), which outgoing connections draw from. A port the kernel gave a client
#: connection cannot be bound again until that connection's TIME_WAIT ends (a minute),
#: so a server on an ephemeral port could not come back on it after a restart.
SERVER_PORT_MIN = 10000
SERVER_PORT_MAX = 19999
_EPHEMERAL_RANGE = _PROC / "sys" / "net" / "ipv4" / "ip_local_port_range"
_RANDOM_TRIES = 64
# Ports this process handed out lately: two calls before either server binds (a stack's
# three servers, a test's agent and its Consul port) must not get the same one.
_RECENT: collections.deque[int] = collections.deque(maxlen=256)


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


def free_port(host: str = LOOPBACK, taken: Iterable[int] = ()) -> int:
    """A port free on `host` right now, outside the ranges the kernel and Nomad hand out
    (`SERVER_PORT_MIN`..`SERVER_PORT_MAX`, minus any overlap with this machine's ephemeral
    range); any free port when none is found there."""
    avoid = {*taken, *_RECENT}
    low, high = _ephemeral_range()
    port = None
    for _ in range(_RANDOM_TRIES):
        candidate = random.randint(SERVER_PORT_MIN, SERVER_PORT_MAX)
        if candidate not in avoid and not low <= candidate <= high and is_free(candidate, host):
            port = candidate
            break
    if port is None:
        port = _kernel_port(host, avoid)
    _RECENT.append(port)
    return port


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(v) for v in _EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def _kernel_port(host: str, avoid: set[int]) -> int:
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
    return free_port(host, taken)


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
