"""Fixtures shared by every test directory: real agent and S3 server processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from testsupport import ServerProcess, agent_process, s3_process, stop_agent


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh `nomadpaas agent --dev` (ACLs off) with its own data dir."""
    server = agent_process(tmp_path / "agent", log_path=tmp_path / "agent.log")
    server.start()
    try:
        yield server
    finally:
        stop_agent(server)


@pytest.fixture
def acl_agent(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    """An agent with ACLs on; yields (server, management token)."""
    token_file = tmp_path / "acl-token"
    server = agent_process(
        tmp_path / "agent", acl_token_file=token_file, log_path=tmp_path / "agent.log"
    )
    server.start()
    try:
        yield server, token_file.read_text().strip()
    finally:
        stop_agent(server)


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[ServerProcess]:
    """The embedded durable S3 server with its own data dir."""
    server = s3_process(tmp_path / "s3", log_path=tmp_path / "s3.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()
