"""Fixtures for slug builder tests: run real builds, unpack slugs elsewhere, start them."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from testsupport import free_port, wait_http

from nomadpaas.slugbuilder import BuildRequest, BuildResult, build_slug
from nomadpaas.slugbuilder.archive import extract_tarball

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BUILDPACKS = REPO / "buildpacks"


@dataclass
class Build:
    """One finished (or failed) build and its log lines."""

    result: BuildResult | None
    log: list[str] = field(default_factory=list)
    error: Exception | None = None

    @property
    def output(self) -> str:
        return "\n".join(self.log)


@pytest.fixture
def build(tmp_path: Path) -> Callable[..., Build]:
    """build(source, cache_dir=None, config=None, raises=False) -> Build."""
    counter = iter(range(1_000))

    def run(
        source: Path | str,
        *,
        cache_dir: Path | None = None,
        config: Mapping[str, str] | None = None,
        buildpacks_dir: Path = BUILDPACKS,
        raises: bool = False,
    ) -> Build:
        n = next(counter)
        src = source if isinstance(source, Path) else EXAMPLES / source
        request = BuildRequest(
            source=src,
            work_dir=tmp_path / f"work{n}",
            cache_dir=cache_dir or tmp_path / f"cache{n}",
            output_dir=tmp_path / f"out{n}",
            config=dict(config or {}),
            buildpacks_dir=buildpacks_dir,
            build_id=f"test-{n}",
        )
        lines: list[str] = []
        if raises:
            try:
                build_slug(request, log=lines.append)
            except Exception as exc:  # the test inspects it
                return Build(result=None, log=lines, error=exc)
            raise AssertionError("the build succeeded:\n" + "\n".join(lines))
        return Build(result=build_slug(request, log=lines.append), log=lines)

    return run


def _unpack(slug: Path, dest: Path) -> Path:
    extract_tarball(slug, dest)
    return dest / "app"


@pytest.fixture
def unpack() -> Callable[[Path, Path], Path]:
    """unpack(slug, dest) -> app dir: extract safely, as the run side will."""
    return _unpack


@dataclass
class RunningSlug:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_slug(tmp_path: Path) -> Iterator[Callable[..., RunningSlug]]:
    """start_slug(app_dir, process_type="web", env=None, wait_path="/") -> RunningSlug.

    The process (its whole group) is killed in teardown.
    """
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        app_dir: Path,
        process_type: str = "web",
        env: Mapping[str, str] | None = None,
        wait_path: str | None = "/",
    ) -> RunningSlug:
        port = free_port()
        log_path = tmp_path / f"{process_type}-{port}.log"
        full_env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "PORT": str(port),
            "HOST": "127.0.0.1",
            **(env or {}),
        }
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [str(app_dir / ".nomadpaas" / "start"), process_type],
                env=full_env,
                cwd="/",
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(proc)
        running = RunningSlug(proc=proc, port=port, log_path=log_path)
        if wait_path is not None:
            try:
                wait_http(running.url + wait_path, timeout=30.0, proc=proc)
            except (RuntimeError, TimeoutError) as exc:
                raise AssertionError(f"{exc}\n--- app log ---\n{running.log()}") from exc
        return running

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=15)
