"""Builds that install from PyPI/npm: Flask (cold, then warm from the cache), failures,
functions and Express. Each slug runs from a directory other than its build dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder import CompileFailed

pytestmark = pytest.mark.slow

BuildFn = Callable[..., Any]
StartFn = Callable[..., Any]
UnpackFn = Callable[[Path, Path], Path]
CACHE_HIT = "Dependencies unchanged since the last build: skipping the install (cache hit)"


@pytest.fixture(scope="module")
def uv_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """uv from PyPI, installed once for this module (as the build task will have it on PATH)."""
    if found := shutil.which("uv"):
        return Path(found).parent
    target = tmp_path_factory.mktemp("uv-tool")
    subprocess.run(
        ["python3", "-m", "pip", "install", "--quiet", "--target", str(target), "uv"],
        check=True, timeout=300, env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"},
    )  # fmt: skip
    return target / "bin"


@pytest.fixture
def uv_on_path(uv_bin: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Builds in this test find uv on PATH instead of bootstrapping it into their cache."""
    monkeypatch.setenv("PATH", f"{uv_bin}{os.pathsep}{os.environ['PATH']}")
    yield


def test_flask_cold_then_warm_build_runs_from_anywhere(
    unpack: UnpackFn, build: BuildFn, start_slug: StartFn, tmp_path: Path, uv_on_path: None
) -> None:
    cache = tmp_path / "flask-cache"
    started = time.monotonic()
    cold = build("flask", cache_dir=cache, config={"GREETING": "unused-at-build"})
    cold_s = time.monotonic() - started
    assert cold.result is not None
    assert "-----> Python app detected" in cold.output
    assert "Installing dependencies with uv" in cold.output or "with pip" in cold.output
    assert "+ flask==" in cold.output and CACHE_HIT not in cold.output
    assert cold.result.metadata.process_types == {"web": "python app.py"}

    started = time.monotonic()
    warm = build("flask", cache_dir=cache)
    warm_s = time.monotonic() - started
    assert warm.result is not None
    assert CACHE_HIT in warm.output
    assert "+ flask==" not in warm.output and "Resolved" not in warm.output  # no downloads
    # The restored venv is left as it was (no file rewritten): its slug layer is reused.
    assert "Reused unchanged .venv from the build cache" in warm.output
    print(f"flask build: cold {cold_s:.1f} s, warm {warm_s:.1f} s")
    # The venv moves between cache and build dir as hard links (creating files is the cost).
    cached = next((cache / "python" / "slug" / ".venv").rglob("flask/__init__.py"))
    assert cached.stat().st_nlink >= 2

    # Unpack far from the build dir, and remove the build dirs so nothing can point back.
    app = unpack(warm.result.slug_path, tmp_path / "deep" / "run" / "dir")
    for work in tmp_path.glob("work*"):
        shutil.rmtree(work)
    assert cached.is_file()  # the cache keeps its own name for every file
    venv_python = app / ".venv" / "bin" / "python"
    assert not venv_python.is_symlink()  # the absolute link is not in the slug...
    running = start_slug(app, env={"GREETING": "hej"}, wait_path="/healthz")
    body = httpx.get(running.url + "/").json()
    assert body == {"app": "flask", "dyno": "web.1", "greeting": "hej"}
    assert venv_python.is_symlink() and venv_python.resolve().is_file()  # ...but made at start


def test_changed_requirements_discard_the_cache(
    build: BuildFn, tmp_path: Path, uv_on_path: None
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "requirements.txt").write_text("itsdangerous==2.2.0\n")
    (src / "Procfile").write_text("web: python -c 'import itsdangerous'\n")
    cache = tmp_path / "cache"
    assert build(src, cache_dir=cache).result is not None
    (src / "requirements.txt").write_text("itsdangerous==2.1.2\n")
    second = build(src, cache_dir=cache)
    assert CACHE_HIT not in second.output
    assert "the cached install is discarded" in second.output
    assert "+ itsdangerous==2.1.2" in second.output


def test_bad_requirements_fail_with_the_installers_error(build: BuildFn, uv_on_path: None) -> None:
    done = build("fail-bad-requirements", raises=True)
    assert isinstance(done.error, CompileFailed) and done.error.exit_code == 3
    tail = "\n".join(done.error.log_tail)
    assert "nomadpaas-this-package-does-not-exist" in tail
    assert "installing the dependencies from requirements.txt failed" in tail


def test_python_app_without_procfile_has_no_web(build: BuildFn, tmp_path: Path) -> None:
    # No uv on PATH here (unless the machine has one, or the interpreter's venv ships it:
    # the slug builder puts that on PATH): this build bootstraps uv from PyPI.
    cache = tmp_path / "cache"
    done = build("fail-no-web", cache_dir=cache, raises=True)
    if shutil.which("uv") is None and not (Path(sys.executable).parent / "uv").exists():
        assert "Installing uv from PyPI" in done.output
        assert (cache / "python" / "uv-tool" / "bin" / "uv").is_file()
    assert isinstance(done.error, BuildFailed)
    assert (
        "No process types" in done.error.message and "no default web process" in done.error.message
    )
    assert done.error.hint and "web:" in done.error.hint


def test_python_version_mismatch_is_a_warning(
    build: BuildFn, tmp_path: Path, uv_on_path: None
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "runtime.txt").write_text("python-3.9.1\n")
    (src / "Procfile").write_text("web: python -V\n")
    done = build(src)
    assert done.result is not None
    assert "the app asks for Python 3.9.1 but this machine has" in done.output


def test_python_function_is_served_by_functions_framework(
    unpack: UnpackFn, build: BuildFn, start_slug: StartFn, tmp_path: Path, uv_on_path: None
) -> None:
    done = build("python-function")
    assert done.result is not None
    assert done.result.metadata.buildpack_description == "Python function"
    assert "functions-framework" in done.result.metadata.process_types["web"]
    app = unpack(done.result.slug_path, tmp_path / "fn")
    running = start_slug(app)
    assert httpx.get(running.url + "/healthz?name=x").json()["hello"] == "x"


def test_express_builds_with_npm_ci_and_runs(
    unpack: UnpackFn, build: BuildFn, start_slug: StartFn, tmp_path: Path
) -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    cache = tmp_path / "node-cache"
    done = build("express", cache_dir=cache)
    assert done.result is not None
    assert "Installing dependencies with npm ci" in done.output
    assert done.result.metadata.process_types == {"web": "npm start"}
    app = unpack(done.result.slug_path, tmp_path / "node-run")
    running = start_slug(app, wait_path="/healthz")
    assert httpx.get(running.url + "/").json()["app"] == "express"
    # With a lockfile the npm download cache is what is kept (keyed by node/npm versions).
    assert any((cache / "node" / "npm-cache").iterdir())
    assert "node v" in (cache / "node" / "signature").read_text()


def test_pip_fallback_makes_console_scripts_relocatable(
    unpack: UnpackFn,
    build: BuildFn,
    start_slug: StartFn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOMADPAAS_NO_UV", "1")
    src = tmp_path / "src"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "flask", src)
    # A console script (bin/flask) exercises the rewritten shebang.
    (src / "Procfile").write_text("web: flask --app app run --host 127.0.0.1 --port $PORT\n")
    done = build(src)
    assert done.result is not None
    assert "Installing dependencies with pip" in done.output
    app = unpack(done.result.slug_path, tmp_path / "pip-run")
    assert (app / ".venv" / "bin" / "flask").read_text().startswith("#!/bin/sh\n")
    running = start_slug(app, wait_path="/healthz")
    assert httpx.get(running.url + "/").json()["app"] == "flask"
