"""testsupport.ServerProcess: a server whose port was taken before it bound is started again
on a fresh port (the first start only), and a server that fails otherwise is not retried."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from testsupport import s3_process


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_first_start_on_a_taken_port_moves_to_a_fresh_one(tmp_path: Path) -> None:
    taken = _listening()
    try:
        busy = taken.getsockname()[1]
        server = s3_process(tmp_path / "s3", log_path=tmp_path / "s3.log")
        argv = list(server.argv)
        argv[argv.index("--port") + 1] = str(busy)
        server.argv, server.port = argv, busy
        server.start()
        try:
            assert server.port != busy
            assert httpx.get(server.url + "/", timeout=5).status_code < 500
            assert b"address already in use" in (tmp_path / "s3.log").read_bytes().lower()
        finally:
            server.kill()
    finally:
        taken.close()


def test_a_server_that_fails_for_another_reason_is_not_retried(tmp_path: Path) -> None:
    server = s3_process(tmp_path / "s3", log_path=tmp_path / "s3.log")
    server.argv = [*server.argv, "--no-such-flag"]
    with pytest.raises(RuntimeError, match="exited"):
        server.start()
    # One start only: argparse complained once.
    assert (tmp_path / "s3.log").read_bytes().count(b"--no-such-flag") == 1
