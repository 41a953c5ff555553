"""Port choice for the embedded stack, and who listens on a port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nomadpaas.agent.scheduler.ports import MAX_DYNAMIC_PORT, MIN_DYNAMIC_PORT
from nomadpaas.errors import InvalidInput
from nomadpaas.stack.ports import choose_port, free_port, is_free, listened_by


@pytest.fixture
def busy() -> Iterator[int]:
    """A port held by a listening socket of this test process."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _free() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_is_free(busy: int) -> None:
    assert not is_free(busy)
    assert is_free(_free())


def test_zero_means_any_free_port_not_the_default(busy: int) -> None:
    port = choose_port("--nomad-port", 0, None, busy)
    assert port != busy and is_free(port)


def test_none_prefers_recorded_then_default_then_any(busy: int) -> None:
    recorded, default = _free(), _free()
    assert choose_port("--x", None, recorded, default) == recorded
    assert choose_port("--x", None, busy, default) == default
    assert choose_port("--x", None, None, default) == default
    fallback = choose_port("--x", None, busy, busy)
    assert fallback != busy and is_free(fallback)


def test_ports_taken_by_other_servers_are_skipped() -> None:
    default = _free()
    assert choose_port("--x", None, None, default, taken=[default]) != default


def test_explicit_busy_port_is_a_usage_error(busy: int) -> None:
    with pytest.raises(InvalidInput) as info:
        choose_port("--nomad-port", busy, None, 4646)
    assert "--nomad-port 0" in str(info.value.hint)
    assert info.value.exit_code == 2


def test_listened_by_tells_our_socket_from_anothers(busy: int) -> None:
    assert listened_by(os.getpid(), busy) is True
    assert listened_by(os.getpid(), _free()) is False
    # Our parent's family includes us (a server may bind in a child), a sibling's does not.
    assert listened_by(os.getppid(), busy) is True
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert listened_by(sibling.pid, busy) is False
    finally:
        sibling.kill()
        sibling.wait(timeout=10)


def test_any_free_port_is_outside_the_ephemeral_and_dynamic_ranges() -> None:
    """A server's port must be one no outgoing connection can hold: a client socket that
    had it (even in TIME_WAIT, for a minute) keeps a restarted server from binding it."""
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
    low, high = (int(v) for v in ephemeral.split())
    picked = [free_port() for _ in range(20)] + [choose_port("--x", 0, None, 4646)]
    assert len(set(picked)) == len(picked), "handed out twice before anything bound it"
    for port in picked:
        assert not low <= port <= high and not MIN_DYNAMIC_PORT <= port <= MAX_DYNAMIC_PORT
        assert is_free(port)


def test_a_port_a_client_connection_used_cannot_be_bound_again() -> None:
    """Why: the kernel's own pick for a server (bind to port 0) is an ephemeral port."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.socket()
        client.bind(("127.0.0.1", 0))
        used = client.getsockname()[1]
        client.connect(server.getsockname())
        accepted, _ = server.accept()
        client.close()  # the client closes first: its side goes to TIME_WAIT
        accepted.close()
    assert not is_free(used)
