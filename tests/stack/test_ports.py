"""Port choice for the embedded stack, and who listens on a port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from nomadpaas.errors import InvalidInput
from nomadpaas.stack.ports import choose_port, is_free, listened_by


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
