"""Fixtures for the server tests: an in-memory scheduling harness."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agent.server.sched_harness import Harness


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    try:
        yield harness
    finally:
        harness.server.stop()
