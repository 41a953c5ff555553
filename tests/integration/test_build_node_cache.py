"""The node-local build cache through the real agent and S3 server, started as `up` does
(`-meta nomadpaas.build_cache_dir=...`): the build job's `${meta...}` env resolves on the
node, the first build fills this app's slot, and a rebuild uses it after a 304."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from testsupport import ServerProcess, bucket_storage, node_cache_agent

from nomadpaas import Platform, Settings
from nomadpaas.models import BuildEvent

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BUILD_TIMEOUT_S = 240.0
CACHE_SAVE_WAIT_S = 60.0


@pytest.fixture
def node_cache(tmp_path: Path) -> Path:
    return tmp_path / "build-cache"


@pytest.fixture
def platform(s3: ServerProcess, tmp_path: Path, node_cache: Path) -> Iterator[Platform]:
    with node_cache_agent(tmp_path, node_cache) as agent:
        settings = Settings(nomad_addr=agent.url, s3_endpoint=s3.url, home=tmp_path / "home")
        with Platform(settings, storage=bucket_storage(s3.url)) as platform:
            yield platform


def _build(platform: Platform, source: Path) -> list[str]:
    events: list[BuildEvent] = []
    build = platform.build("worker", source, on_event=events.append, timeout=BUILD_TIMEOUT_S)
    lines = [e.message for e in events if e.kind == "log"]
    assert build.status == "succeeded", lines
    return lines


def test_a_rebuild_uses_the_node_s_copy_of_the_cache(
    platform: Platform, tmp_path: Path, node_cache: Path
) -> None:
    platform.create_app("worker")
    source = tmp_path / "worker"
    shutil.copytree(EXAMPLES / "shell-worker", source)

    first = _build(platform, source)
    assert not any("this node's copy" in line for line in first)
    # The task saves the cache after its result, off the build's path: the build may
    # return first, so give the save time (bounded).
    tag_file = node_cache / "worker" / "nomadpaas-1" / "tag"
    deadline = time.monotonic() + CACHE_SAVE_WAIT_S
    while not tag_file.exists():
        assert time.monotonic() < deadline, "the node's copy of the cache was never tagged"
        time.sleep(0.05)
    tag = json.loads(tag_file.read_text())
    assert tag["object"].endswith("/cache/worker/nomadpaas-1.tar.gz")
    assert platform.storage.exists("cache/worker/nomadpaas-1.tar.gz")

    (source / "worker.sh").write_text((source / "worker.sh").read_text() + "\n# changed\n")
    second = _build(platform, source)
    assert any("this node's copy is current" in line for line in second), second
