"""Fixtures for raw_exec tests: one LogMon, one driver, a harness; all torn down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agent.drivers.rawexec_support import Harness

from nomadpaas.agent.client.logmon.logmon import LogMon
from nomadpaas.agent.drivers.rawexec.driver import RawExecDriver


@pytest.fixture(params=["executor", "sh"])
def driver(request: pytest.FixtureRequest) -> Iterator[RawExecDriver]:
    """Every driver test runs under both task executors: the native one (executor.c) and
    the sh wrapper the driver falls back to without a C compiler."""
    d = RawExecDriver(native_executor=request.param == "executor")
    if request.param == "executor" and d.executor is None:
        pytest.skip("no C compiler: the native executor cannot be built here")
    try:
        yield d
    finally:
        for task_id in d.task_ids():
            d.destroy_task(task_id, force=True)


@pytest.fixture
def logmon() -> Iterator[LogMon]:
    lm = LogMon()
    try:
        yield lm
    finally:
        lm.close()


@pytest.fixture
def harness(tmp_path: Path, driver: RawExecDriver, logmon: LogMon) -> Iterator[Harness]:
    h = Harness(str(tmp_path), driver, logmon)
    try:
        yield h
    finally:
        h.kill_leftovers()
