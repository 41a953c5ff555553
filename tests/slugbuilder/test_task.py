"""The build task seam: objects by URL (file:// here), cache restored and saved."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder.archive import sha256_file
from nomadpaas.slugbuilder.task import BuildTask, FileTransfer, run_build_task
from nomadpaas.slugbuilder.timings import Timings, process_age


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


@pytest.fixture
def reading_buildpacks(tmp_path: Path) -> Path:
    """One buildpack that only reads CACHE_DIR after the first build (a warm cache hit)."""
    bin_dir = tmp_path / "rbps" / "reader" / "bin"
    bin_dir.mkdir(parents=True)
    scripts = {
        "detect": "echo Reader",
        "compile": 'if [ -f "$2/deps/key" ]; then echo "       cache hit $(cat "$2/deps/key")"\n'
        'else mkdir -p "$2/deps"; echo k1 > "$2/deps/key"; fi',
        "release": "printf 'default_process_types:\\n  web: echo hi\\n'",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\nset -eu\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    return tmp_path / "rbps"


def _cache_task(tmp_path: Path, put_name: str = "nomadpaas-1.tar.gz") -> BuildTask:
    bucket = tmp_path / "bucket"
    return BuildTask(
        source_url=_source(tmp_path).as_uri(),
        slug_url=(bucket / "slugs" / "app.tar.gz").as_uri(),
        cache_url=(bucket / "cache" / "nomadpaas-1.tar.gz").as_uri(),
        cache_put_url=(bucket / "cache" / put_name).as_uri(),
        config={"BUILDPACK_URL": "reader"},
    )


def test_untouched_cache_is_not_uploaded_again(reading_buildpacks: Path, tmp_path: Path) -> None:
    task = _cache_task(tmp_path)
    stored = tmp_path / "bucket" / "cache" / "nomadpaas-1.tar.gz"
    lines: list[str] = []
    timings = Timings()
    run_build_task(task, FileTransfer(), tmp_path / "w1", lines.append, reading_buildpacks)
    assert any("Build cache saved" in line for line in lines)
    first = stored.stat()

    lines.clear()
    run_build_task(task, FileTransfer(), tmp_path / "w2", lines.append, reading_buildpacks, timings)
    assert "       cache hit k1" in lines
    assert any("Build cache unchanged" in line for line in lines)
    assert not any("Build cache saved" in line for line in lines)
    assert stored.stat().st_ino == first.st_ino  # FileTransfer replaces on store: not stored
    phases = timings.to_dict()
    for phase in ("fetch_source", "restore_cache", "detect", "compile", "pack_slug"):
        assert phase in phases and phases[phase] >= 0
    assert "upload_slug" in phases and "pack_cache" not in phases


def test_cache_is_saved_when_a_buildpack_changed_it(
    counting_buildpacks: Path, tmp_path: Path
) -> None:
    bucket = tmp_path / "bucket"
    url = (bucket / "cache" / "nomadpaas-1.tar.gz").as_uri()
    task = BuildTask(
        source_url=_source(tmp_path).as_uri(),
        slug_url=(bucket / "slug.tar.gz").as_uri(),
        cache_url=url,
        cache_put_url=url,
        config={"BUILDPACK_URL": "counter"},
    )
    for n in (1, 2, 3):
        lines: list[str] = []
        run_build_task(task, FileTransfer(), tmp_path / f"w{n}", lines.append, counting_buildpacks)
        assert f"       build number {n}" in lines  # each build saw the previous one's cache
        assert any("Build cache saved" in line for line in lines)


def test_cache_restored_from_elsewhere_is_saved_even_when_untouched(
    reading_buildpacks: Path, tmp_path: Path
) -> None:
    task = _cache_task(tmp_path)
    run_build_task(task, FileTransfer(), tmp_path / "w1", None, reading_buildpacks)
    lines: list[str] = []
    other_url = (tmp_path / "bucket" / "cache" / "other.tar.gz").as_uri()
    other = task.replace(cache_put_url=other_url)
    run_build_task(other, FileTransfer(), tmp_path / "w2", lines.append, reading_buildpacks)
    assert "       cache hit k1" in lines
    assert (tmp_path / "bucket" / "cache" / "other.tar.gz").is_file()


class _SlugUploadFails(FileTransfer):
    def store(self, path: Path, url: str) -> None:
        if "slugs" in url:
            raise OSError("S3 said no")
        super().store(path, url)


def test_a_failed_slug_upload_fails_the_task(reading_buildpacks: Path, tmp_path: Path) -> None:
    # The slug uploads on a thread; its error must still reach the caller.
    with pytest.raises(OSError, match="S3 said no"):
        run_build_task(
            _cache_task(tmp_path), _SlugUploadFails(), tmp_path / "w", None, reading_buildpacks
        )


def test_timings_add_up_per_phase_even_when_it_raises() -> None:
    now = iter([0.0, 0.5, 1.0, 1.25, 2.0, 2.125])
    timings = Timings(clock=lambda: next(now))
    with timings.phase("compile"):
        pass
    with timings.phase("compile"):
        pass
    with pytest.raises(ValueError), timings.phase("pack_slug"):
        raise ValueError
    assert timings.to_dict() == {"compile": 0.75, "pack_slug": 0.125}


def test_process_age_is_this_process_s_age() -> None:
    age = process_age()
    assert age is not None and 0 < age < 24 * 3600


def test_cache_packed_early_is_not_saved_when_the_build_fails_later(
    counting_buildpacks: Path, tmp_path: Path
) -> None:
    release = counting_buildpacks / "counter" / "bin" / "release"
    release.write_text("#!/usr/bin/env bash\nexit 1\n")  # fails after compile changed the cache
    bucket = tmp_path / "bucket"
    url = (bucket / "cache" / "nomadpaas-1.tar.gz").as_uri()
    task = BuildTask(
        source_url=_source(tmp_path).as_uri(),
        slug_url=(bucket / "slug.tar.gz").as_uri(),
        cache_url=url,
        cache_put_url=url,
        config={"BUILDPACK_URL": "counter"},
    )
    with pytest.raises(BuildFailed, match="bin/release"):
        run_build_task(task, FileTransfer(), tmp_path / "w", None, counting_buildpacks)
    assert not (bucket / "cache").exists() and not (bucket / "slug.tar.gz").exists()


def test_the_cache_fingerprint_is_what_a_walk_with_lstat_sees(tmp_path: Path) -> None:
    import os
    import stat

    from nomadpaas.slugbuilder.task import _fingerprint

    root = tmp_path / "cache"
    (root / "venv" / "lib" / "pkg").mkdir(parents=True)
    (root / "venv" / "lib" / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "venv" / "bin").mkdir()
    (root / "venv" / "bin" / "python").symlink_to("/usr/bin/python3")
    (root / "venv" / "lib64").symlink_to("lib")  # a link to a directory: not followed
    (root / "top.txt").write_text("top")
    os.utime(root / "top.txt", ns=(5, 1_500_000_007))

    expected = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
            rel = os.path.relpath(path, root)
            expected.add((rel, st.st_mode, st.st_size, st.st_mtime_ns, target))
    root_stat = os.lstat(root)
    expected.add((".", root_stat.st_mode, 0, root_stat.st_mtime_ns, ""))

    found = _fingerprint(root)
    assert found == expected
    assert {e[0]: e[4] for e in found if e[4]} == {
        "venv/bin/python": "/usr/bin/python3",
        "venv/lib64": "lib",
    }
    assert not any(e[0].startswith("venv/lib64/") for e in found)
    os.utime(root / "venv" / "lib" / "pkg" / "mod.py", ns=(5, 7))  # a buildpack's write
    assert _fingerprint(root) != found
