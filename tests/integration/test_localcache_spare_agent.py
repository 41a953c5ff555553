"""The spare of the node cache through the real agent and S3 server: a python app's warm
build takes its venv from the spare the previous build left, builds at once and back to
back all succeed, and the slot ends with its tag and a whole spare (localcache.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from testsupport import ServerProcess, bucket_storage, node_cache_agent

from nomadpaas import Platform, Settings
from nomadpaas.models import BuildEvent
from nomadpaas.slugbuilder.localcache import LocalCache

BUILD_TIMEOUT_S = 240.0
#: The task makes the spare after the build's result: how long a test waits for it.
SLOT_WAIT_S = 60.0
CACHE_HIT = "skipping the install (cache hit)"
APP = "pyapp"


@pytest.fixture
def node_cache(tmp_path: Path) -> Path:
    return tmp_path / "build-cache"


@pytest.fixture
def settings(s3: ServerProcess, tmp_path: Path, node_cache: Path) -> Iterator[Settings]:
    with node_cache_agent(tmp_path, node_cache) as agent:
        yield Settings(nomad_addr=agent.url, s3_endpoint=s3.url, home=tmp_path / "home")


def _platform(settings: Settings) -> Platform:
    storage = bucket_storage(settings.s3_endpoint or "")
    return Platform(settings, storage=storage)


def _build(settings: Settings, source: Path) -> list[str]:
    events: list[BuildEvent] = []
    with _platform(settings) as platform:
        build = platform.build(APP, source, on_event=events.append, timeout=BUILD_TIMEOUT_S)
    lines = [e.message for e in events if e.kind == "log"]
    assert build.status == "succeeded", lines
    return lines


def _spare_venv(node_cache: Path) -> Path:
    return node_cache / APP / "nomadpaas-1" / "tree.spare" / "python" / "slug" / ".venv"


def _spare_once_idle(node_cache: Path) -> int:
    """The inode of the spare's venv once the last build let go of the slot (the task
    makes the spare after the build's result, then unlocks the slot)."""
    slot = LocalCache(node_cache).acquire(APP, "nomadpaas-1", wait_s=SLOT_WAIT_S)
    assert slot is not None, f"the slot stayed busy for {SLOT_WAIT_S} s"
    try:
        assert (Path(slot.dir) / "tag").is_file()
        return _spare_venv(node_cache).stat().st_ino
    finally:
        slot.release()


def test_warm_builds_take_the_spare_and_builds_at_once_still_work(
    settings: Settings, tmp_path: Path, node_cache: Path
) -> None:
    with _platform(settings) as platform:
        platform.create_app(APP)
    source = tmp_path / "src"
    source.mkdir()
    (source / "requirements.txt").write_text("# no packages: offline\n")
    (source / "Procfile").write_text("worker: python -c 'print(1)'\n")
    (source / "app.py").write_text("print('v1')\n")
    # The build dir goes with the task: the build says which .venv it got, while it runs.
    hook = source / "bin" / "post_compile"
    hook.parent.mkdir()
    hook.write_text('#!/bin/sh\necho "venv inode $(stat -c %i .venv)"\n')
    hook.chmod(0o755)
    cold = _build(settings, source)
    assert not any(CACHE_HIT in line for line in cold)
    spare = _spare_once_idle(node_cache)

    (source / "app.py").write_text("print('v2')\n")
    warm = _build(settings, source)
    assert any(CACHE_HIT in line for line in warm), warm
    # The build dir's .venv was the spare's directory, renamed.
    assert f"       venv inode {spare}" in warm, warm
    spare = _spare_once_idle(node_cache)

    # Two builds of the app at once (one uses the slot, the other waits for it or builds
    # from S3's copy), then one more: all succeed on the cache, none breaks the slot.
    (source / "app.py").write_text("print('v3')\n")
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(_build(settings, source))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=BUILD_TIMEOUT_S * 2)
    assert not errors and len(results) == 2
    assert all(any(CACHE_HIT in line for line in lines) for lines in results)
    assert any(f"       venv inode {spare}" in lines for lines in results), results
    spare = _spare_once_idle(node_cache)
    (source / "app.py").write_text("print('v4')\n")
    last = _build(settings, source)
    assert any(CACHE_HIT in line for line in last)
    assert f"       venv inode {spare}" in last, last
    _spare_once_idle(node_cache)
