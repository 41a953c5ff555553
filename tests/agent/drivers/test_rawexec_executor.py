"""The native executor's build and cache (executor.py): built once per machine into the
user's cache dir, named by a digest of its source, never trusted when others could have
written it, and absent (the sh wrapper then runs tasks) without a C compiler. The
executor's behaviour itself is covered by every driver test, which runs under both."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nomadpaas.agent.drivers.rawexec import executor
from nomadpaas.agent.drivers.rawexec.driver import RawExecDriver, wrapper_state_dir

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler"
)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    executor.executor_path.cache_clear()
    try:
        yield tmp_path / "cache" / "nomadpaas"
    finally:
        executor.executor_path.cache_clear()


def test_built_once_into_the_cache_dir_and_reused(cache: Path) -> None:
    path = executor.executor_path()
    assert path is not None and Path(path).parent == cache
    assert Path(path).name.startswith(executor.NAME_PREFIX)
    mtime = os.stat(path).st_mtime_ns
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    executor.executor_path.cache_clear()
    assert executor.executor_path() == path  # found, not rebuilt
    assert os.stat(path).st_mtime_ns == mtime
    assert sorted(p.name for p in cache.iterdir()) == [Path(path).name]  # no temporaries


def test_a_binary_others_could_have_written_is_rebuilt(cache: Path) -> None:
    path = executor.executor_path()
    assert path is not None
    Path(path).write_bytes(b"#!/bin/sh\necho planted\n")
    os.chmod(path, 0o777)
    executor.executor_path.cache_clear()
    assert executor.executor_path() == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o755
    assert Path(path).read_bytes()[:4] == b"\x7fELF"  # a fresh build, not the planted file


def test_without_a_compiler_tasks_run_under_the_sh_wrapper(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(cache.parent / "empty"))
    assert executor.executor_path() is None
    monkeypatch.setenv("PATH", os.defpath)  # setsid(1) and env(1) for the wrapper
    assert RawExecDriver().executor is None


def test_usage_errors_and_argv_recognition(cache: Path) -> None:
    path = executor.executor_path()
    assert path is not None
    bad = subprocess.run([path, "--other", "x", "true"], capture_output=True, check=False)
    assert bad.returncode == 2 and b"usage" in bad.stderr
    argv = [path.encode(), executor.MARK.encode(), b"/state", b"/bin/true"]
    assert wrapper_state_dir(argv) == "/state"
    assert wrapper_state_dir([b"/usr/bin/python3", executor.MARK.encode(), b"/state"]) is None
    assert wrapper_state_dir([path.encode(), b"--other", b"/state"]) is None
