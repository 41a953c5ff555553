"""Full local builds of the machine-only examples, run from a different directory.

Each slug is unpacked somewhere else than it was built and started with its launcher:
the app must answer over HTTP on 127.0.0.1 (this is what proves relocation).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder import CompileFailed

# Fixture types (conftest.py: Build, RunningSlug).
BuildFn = Callable[..., Any]
StartFn = Callable[..., Any]
UnpackFn = Callable[[Path, Path], Path]


def test_procfile_app_builds_and_runs_elsewhere(
    unpack: UnpackFn, build: BuildFn, start_slug: StartFn, tmp_path: Path
) -> None:
    done = build("shell-worker")
    assert done.result is not None
    meta = done.result.metadata
    assert meta.process_types == {
        "worker": "bash worker.sh",
        "web": 'python3 -m http.server "$PORT" --bind "${HOST:-127.0.0.1}" --directory status',
    }
    assert "release" not in meta.process_types  # "#release:" is a comment
    assert meta.buildpacks == ["procfile"] and meta.buildpack_description == "Procfile"
    assert "-----> Procfile app detected" in done.output
    on_disk = json.loads(Path(done.result.metadata_path).read_text())
    assert on_disk["sha256"] == meta.sha256 and on_disk["launcher"] == "app/.nomadpaas/start"

    app = unpack(done.result.slug_path, tmp_path / "run" / "elsewhere")
    running = start_slug(app, "web", wait_path="/healthz")
    assert "shell-worker is running" in httpx.get(running.url + "/").text

    worker = start_slug(app, "worker", env={"INTERVAL": "0.1"}, wait_path=None)
    deadline = time.monotonic() + 20
    while "tick 2 from worker.1" not in worker.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "tick 2 from worker.1" in worker.log()


def test_static_site_builds_and_serves_without_dotfiles(
    unpack: UnpackFn, build: BuildFn, start_slug: StartFn, tmp_path: Path
) -> None:
    done = build("static-site")
    assert done.result is not None
    assert done.result.metadata.process_types == {"web": "python3 .static-server/server.py"}
    app = unpack(done.result.slug_path, tmp_path / "another-place")
    running = start_slug(app)
    assert "Hello from a static site" in httpx.get(running.url + "/").text
    assert httpx.get(running.url + "/healthz.json").json() == {"status": "ok"}
    # The platform's own files are in the site root here, and must not be served.
    for hidden in ("/.nomadpaas/process-types", "/.profile.d/static.sh", "/.static-server/"):
        assert httpx.get(running.url + hidden).status_code == 404
    assert httpx.get(running.url + "/nope").status_code == 404


def test_crash_on_boot_builds_but_exits_with_its_reason(
    unpack: UnpackFn, build: BuildFn, start_slug: StartFn, tmp_path: Path
) -> None:
    done = build("fail-crash-on-boot")
    assert done.result is not None
    app = unpack(done.result.slug_path, tmp_path / "run")
    running = start_slug(app, wait_path=None)
    assert running.proc.wait(timeout=30) == 1
    assert "fatal: DATABASE_URL is not set; refusing to start" in running.log()


def test_bad_procfile_fails_before_any_buildpack_with_line_numbers(build: BuildFn) -> None:
    done = build("fail-bad-procfile", raises=True)
    assert isinstance(done.error, BuildFailed) and done.error.exit_code == 3
    message = done.error.message
    assert "line 2: expected `name: command`, got '<<<<<<< HEAD'" in message
    assert "line 5: process type 'worker' is defined twice (first on line 3)" in message
    assert not any("detected" in line for line in done.log)


def test_nothing_detected(build: BuildFn, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "README.txt").write_text("just text")
    done = build(src, raises=True)
    assert isinstance(done.error, BuildFailed)
    assert "No buildpack detected this app" in done.error.message
    assert done.error.hint and "Procfile" in done.error.hint


# --- the contract, with buildpacks written for the test -----------------------------------


def _buildpack(root: Path, name: str, detect: str, compile: str, release: str | None) -> None:
    bin_dir = root / name / "bin"
    bin_dir.mkdir(parents=True)
    scripts = {"detect": detect, "compile": compile}
    if release is not None:
        scripts["release"] = release
    for phase, body in scripts.items():
        path = bin_dir / phase
        path.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + body + "\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def custom_buildpacks(tmp_path: Path) -> Path:
    root = tmp_path / "bps"
    # "first": checks .slugignore ran before it, reads ENV_DIR, writes an export + cache.
    _buildpack(
        root,
        "first",
        'echo First; [ -f "$1/marker-first" ]',
        """BP=$(cd "$(dirname "$0")/.." && pwd)
[ ! -e "$1/secret.key" ] || { echo "slugignored file is still there"; exit 1; }
echo "-----> first: SECRET=$(cat "$3/SECRET") STACK=$STACK SOURCE_VERSION=${SOURCE_VERSION:-}"
[ -z "${AWS_SECRET_ACCESS_KEY:-}" ] || { echo "build task env leaked"; exit 1; }
count=$(( $(cat "$2/count" 2>/dev/null || echo 0) + 1 )); echo $count > "$2/count"
echo "       cache count $count"
echo 'export FROM_FIRST=chained' > "$BP/export"
""",
        "echo 'default_process_types:'; echo '  web: ignored because first is not last'",
    )
    # "second": must see the first buildpack's export; last, so its release counts.
    _buildpack(
        root,
        "second",
        "exit 1",
        """echo "-----> second sees FROM_FIRST=${FROM_FIRST:-unset}"
[ "${FROM_FIRST:-}" = chained ]
mkdir -p "$1/.profile.d"; echo 'export FROM_PROFILE=yes' > "$1/.profile.d/second.sh"
""",
        """cat <<'YAML'
---
addons:
  - some-db
default_process_types:
  web: echo "web $FROM_PROFILE $DEFAULTED $USER_SET"
  clock: echo clock
config_vars:
  DEFAULTED: 'from release'
  USER_SET: default
YAML""",
    )
    _buildpack(
        root,
        "broken",
        "echo Broken",
        'echo "       doing work"; echo "boom: it broke" >&2; exit 4',
        None,
    )
    return root


def _source(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "src"
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    return src


def test_multi_buildpack_export_release_and_config_vars(
    unpack: UnpackFn,
    build: BuildFn,
    custom_buildpacks: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "must-not-reach-buildpacks")
    src = _source(
        tmp_path,
        {
            ".buildpacks": "first\nsecond\n",
            "Procfile": "worker: echo from procfile\n",
            "secret.key": "k",
            "docs/big.psd": "x",
            ".slugignore": "*.key\ndocs/\n",
        },
    )
    cache = tmp_path / "shared-cache"
    done = build(
        src, cache_dir=cache, config={"SECRET": "s3cr3t"}, buildpacks_dir=custom_buildpacks
    )
    assert done.result is not None
    out = done.output
    assert "-----> Using buildpack(s) from .buildpacks: first, second" in out
    # The buildpacks ran from a copy: the export went there, the installed ones stay clean.
    assert not (custom_buildpacks / "first" / "export").exists()
    assert "-----> first: SECRET=s3cr3t STACK=nomadpaas-1" in out
    assert "-----> second sees FROM_FIRST=chained" in out
    meta = done.result.metadata
    # Procfile wins; the last buildpack's defaults fill in; the first one's release is ignored.
    assert meta.process_types == {
        "worker": "echo from procfile",
        "web": 'echo "web $FROM_PROFILE $DEFAULTED $USER_SET"',
        "clock": "echo clock",
    }
    assert meta.addons == ["some-db"] and meta.buildpacks == ["first", "second"]

    app = unpack(done.result.slug_path, tmp_path / "run")
    assert not (app / "secret.key").exists() and not (app / "docs").exists()
    run = subprocess.run(
        [str(app / ".nomadpaas" / "start"), "web"],
        env={"PATH": os.environ["PATH"], "USER_SET": "mine"},
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert run.stdout.strip() == "web yes from release mine"

    again = build(src, cache_dir=cache, buildpacks_dir=custom_buildpacks, config={"SECRET": "x"})
    assert "cache count 2" in again.output  # CACHE_DIR survived between builds


def test_compile_failure_names_the_buildpack_and_keeps_the_output(
    build: BuildFn, custom_buildpacks: Path, tmp_path: Path
) -> None:
    src = _source(tmp_path, {"Procfile": "web: x\n"})
    done = build(
        src, config={"BUILDPACK_URL": "broken"}, buildpacks_dir=custom_buildpacks, raises=True
    )
    assert isinstance(done.error, CompileFailed)
    assert done.error.message == "The broken buildpack failed to compile the app (exit code 4)"
    assert done.error.log_tail == ["       doing work", "boom: it broke"]
    assert "boom: it broke" in done.output


def test_slug_must_not_contain_absolute_symlinks(build: BuildFn, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "Procfile").write_text("web: x\n")
    (src / "host-python").symlink_to("/usr/bin/python3")
    done = build(src, raises=True)
    assert isinstance(done.error, BuildFailed)
    assert "host-python is a symlink to the absolute path /usr/bin/python3" in done.error.message


def test_source_tarball_is_extracted_safely(build: BuildFn, tmp_path: Path) -> None:
    good = tmp_path / "good.tar.gz"
    with tarfile.open(good, "w:gz") as tar:
        tar.add(Path(__file__).resolve().parents[2] / "examples" / "shell-worker", arcname=".")
    assert build(good).result is not None
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../escape")
        tar.addfile(info)
    done = build(evil, raises=True)
    assert isinstance(done.error, BuildFailed)
    assert "source tarball was refused" in done.error.message
