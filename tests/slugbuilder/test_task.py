"""The build task seam: objects by URL (file:// here), cache restored and saved."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder.archive import sha256_file
from nomadpaas.slugbuilder.task import BuildTask, FileTransfer, run_build_task


@pytest.fixture
def counting_buildpacks(tmp_path: Path) -> Path:
    """One buildpack that counts its builds in CACHE_DIR."""
    bin_dir = tmp_path / "bps" / "counter" / "bin"
    bin_dir.mkdir(parents=True)
    scripts = {
        "detect": "echo Counter",
        "compile": 'n=$(( $(cat "$2/n" 2>/dev/null || echo 0) + 1 )); echo $n > "$2/n"\n'
        'echo "       build number $n"',
        "release": "printf 'default_process_types:\\n  web: echo hi\\n'",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\nset -eu\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    return tmp_path / "bps"


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.txt").write_text("hi")
    tarball = tmp_path / "bucket" / "sources" / "app.tar.gz"
    tarball.parent.mkdir(parents=True)
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(src, arcname=".")
    return tarball


def test_build_task_round_trip_with_cache(counting_buildpacks: Path, tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    source = _source(tmp_path)
    task = BuildTask(
        source_url=source.as_uri(),
        slug_url=(bucket / "slugs" / "app.tar.gz").as_uri(),
        metadata_url=(bucket / "builds" / "b1.json").as_uri(),
        cache_url=(bucket / "cache" / "app" / "nomadpaas-1.tar.gz").as_uri(),
        cache_put_url=(bucket / "cache" / "app" / "nomadpaas-1.tar.gz").as_uri(),
        config={"BUILDPACK_URL": "counter"},
    )
    lines: list[str] = []
    first = run_build_task(task, FileTransfer(), tmp_path / "w1", lines.append, counting_buildpacks)
    assert "       build number 1" in lines
    assert first.sha256 == sha256_file(bucket / "slugs" / "app.tar.gz")
    assert json.loads((bucket / "builds" / "b1.json").read_text())["process_types"] == {
        "web": "echo hi"
    }
    assert (bucket / "cache" / "app" / "nomadpaas-1.tar.gz").is_file()

    lines.clear()
    run_build_task(task, FileTransfer(), tmp_path / "w2", lines.append, counting_buildpacks)
    assert "-----> Restored the build cache" in lines
    assert "       build number 2" in lines


def test_unreadable_cache_is_a_miss_not_a_failure(
    counting_buildpacks: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "bucket" / "cache.tar.gz"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"garbage")
    task = BuildTask(
        source_url=_source(tmp_path).as_uri(),
        slug_url=(tmp_path / "bucket" / "slug.tar.gz").as_uri(),
        cache_url=cache.as_uri(),
        config={"BUILDPACK_URL": "counter"},
    )
    lines: list[str] = []
    run_build_task(task, FileTransfer(), tmp_path / "w", lines.append, counting_buildpacks)
    assert any("build cache is unreadable" in line for line in lines)
    assert "       build number 1" in lines


def test_missing_source_fails_the_build(tmp_path: Path) -> None:
    task = BuildTask(
        source_url=(tmp_path / "nope.tar.gz").as_uri(), slug_url=(tmp_path / "s").as_uri()
    )
    with pytest.raises(BuildFailed, match="source archive"):
        run_build_task(task, FileTransfer(), tmp_path / "w")
