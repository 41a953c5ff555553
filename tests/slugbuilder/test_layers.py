"""Layered slugs: one gzip member per large directory, reused from the cache byte for byte."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nomadpaas.agent.client.getter.archive import unpack as agent_unpack
from nomadpaas.slugbuilder.archive import GZIP_LEVEL, extract_tarball, pack_directory
from nomadpaas.slugbuilder.layers import LAYER_MIN_ENTRIES, pack_slug

BuildFn = Callable[..., Any]
LEVEL = GZIP_LEVEL  # what builds pack slugs with
SECOND_NS = 1_000_000_000


def _tree(root: Path, count: int = LAYER_MIN_ENTRIES + 10, *, linked: bool = True) -> Path:
    """An app with a large `.deps` dir (a layer) and small files/dirs (the rest).

    `linked`: .deps's files also have names outside the app, as a buildpack that keeps
    the tree in its cache and links it back (``cp -al``) leaves them.
    """
    (root / "src").mkdir(parents=True)
    (root / "Procfile").write_text("web: x\n")
    (root / "src" / "main.py").write_text("print('hi')\n")
    deps = root / ".deps" / "lib"
    deps.mkdir(parents=True)
    for i in range(count):
        (deps / f"mod{i:03d}.py").write_text(f"# module {i}\n" + "x = 1\n" * (i % 40))
    (root / ".deps" / "bin").mkdir()
    (root / ".deps" / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / ".deps" / "bin" / "tool").chmod(0o755)
    (root / ".deps" / "bin" / "alias").symlink_to("tool")
    os.link(deps / "mod000.py", root / ".deps" / "bin" / "same-as-mod000")
    long_dir = root / ".deps" / ("d" * 90) / ("e" * 90)
    long_dir.mkdir(parents=True)
    (long_dir / ("f" * 99)).write_text("long names: ustar prefix, then PAX\n")
    (root / ".deps" / "ünïcode.txt").write_text("pax path\n")
    if linked:
        bp_cache = root.parent / f"{root.name}-buildpack-cache"
        shutil.copytree(root / ".deps", bp_cache, symlinks=True, copy_function=os.link)
    return root


def _members(data: bytes) -> int:
    count = 0
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        d.decompress(data)
        assert d.eof
        data, count = d.unused_data, count + 1
    return count


def _listing(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    out: dict[str, tuple[str, int, bytes | str]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        if path.is_symlink():
            out[rel] = ("link", 0, os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", st.st_mode & 0o777, "")
        else:
            out[rel] = ("file", st.st_mode & 0o777, path.read_bytes())
    return out


def test_reused_layer_gives_the_same_bytes_as_a_fresh_one(tmp_path: Path) -> None:
    app = _tree(tmp_path / "app")
    cache = tmp_path / "cache"
    fresh = pack_slug(app, tmp_path / "fresh.tgz", level=LEVEL)
    first = pack_slug(app, tmp_path / "first.tgz", level=LEVEL, layer_cache=cache)
    second = pack_slug(app, tmp_path / "second.tgz", level=LEVEL, layer_cache=cache)
    assert fresh.layers == first.layers == (".deps",) and fresh.reused == first.reused == ()
    assert second.reused == (".deps",)
    data = (tmp_path / "fresh.tgz").read_bytes()
    assert data == (tmp_path / "first.tgz").read_bytes() == (tmp_path / "second.tgz").read_bytes()
    assert fresh.sha256 == second.sha256 and fresh.compressed_bytes == len(data)
    assert _members(data) == 3  # rest, .deps, end-of-archive
    # Nothing is written to the cache when the layer is reused (the cache stays "unchanged").
    stored = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    pack_slug(app, tmp_path / "third.tgz", level=LEVEL, layer_cache=cache)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stored


def test_layered_slug_reads_as_one_tarball_everywhere(tmp_path: Path) -> None:
    app = _tree(tmp_path / "app")
    slug = tmp_path / "slug.tar.gz"
    stats = pack_slug(app, slug, level=LEVEL)
    with tarfile.open(slug) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "./app" in members and members["./app"].isdir()
    assert members["./app/.deps/bin/alias"].linkname == "tool"
    # Two names of one file: the first in archive order holds the bytes.
    link = members["./app/.deps/lib/mod000.py"]
    assert link.islnk() and link.linkname == "./app/.deps/bin/same-as-mod000"
    assert all(m.uid == 0 and m.gid == 0 and m.uname == m.gname == "" for m in members.values())
    assert stats.files == sum(1 for m in members.values() if not m.isdir())

    expected = _listing(app)
    for name, extract in (
        ("slugbuilder", lambda d: extract_tarball(slug, d)),
        ("agent", lambda d: agent_unpack(slug, d, "tar.gz")),
    ):
        dest = tmp_path / name
        extract(dest)
        assert _listing(dest / "app") == expected, name
    if shutil.which("tar"):
        dest = tmp_path / "gnu"
        dest.mkdir()
        done = subprocess.run(
            ["tar", "-xzf", str(slug), "-C", str(dest)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert _listing(dest / "app") == expected


def test_changed_files_are_packed_again(tmp_path: Path) -> None:
    app = _tree(tmp_path / "app")
    cache = tmp_path / "cache"
    target = app / ".deps" / "lib" / "mod007.py"
    pack_slug(app, tmp_path / "a.tgz", level=LEVEL, layer_cache=cache)

    target.write_text(target.read_text().upper())  # same size, new mtime
    changed = pack_slug(app, tmp_path / "b.tgz", level=LEVEL, layer_cache=cache)
    assert changed.reused == ()
    with tarfile.open(tmp_path / "b.tgz") as tar:
        member = tar.extractfile("./app/.deps/lib/mod007.py")
        assert member is not None and member.read() == target.read_bytes()

    # A whole-second mtime (set by an unpacker, e.g. npm's 1985 date) proves nothing:
    # same size and mtime but new bytes must still be noticed.
    stamp = (499_162_500 * SECOND_NS, 499_162_500 * SECOND_NS)
    os.utime(target, ns=stamp)
    pack_slug(app, tmp_path / "c.tgz", level=LEVEL, layer_cache=cache)
    target.write_text(target.read_text().lower())
    os.utime(target, ns=stamp)
    again = pack_slug(app, tmp_path / "d.tgz", level=LEVEL, layer_cache=cache)
    assert again.reused == ()
    assert again.sha256 == pack_slug(app, tmp_path / "e.tgz", level=LEVEL).sha256

    # Different level: different bytes, so not reused.
    other = pack_slug(app, tmp_path / "f.tgz", level=1, layer_cache=cache)
    assert other.reused == ()


def test_directory_and_symlink_mtimes_do_not_matter(tmp_path: Path) -> None:
    app = _tree(tmp_path / "app")
    cache = tmp_path / "cache"
    first = pack_slug(app, tmp_path / "a.tgz", level=LEVEL, layer_cache=cache)
    (app / ".deps" / "bin" / "tmp").write_text("x")  # touches bin/'s mtime...
    (app / ".deps" / "bin" / "tmp").unlink()  # ...and leaves the same tree
    os.utime(app / ".deps" / "bin" / "alias", ns=(0, 0), follow_symlinks=False)
    second = pack_slug(app, tmp_path / "b.tgz", level=LEVEL, layer_cache=cache)
    assert second.reused == (".deps",) and second.sha256 == first.sha256
    with tarfile.open(tmp_path / "b.tgz") as tar:
        assert tar.getmember("./app/.deps/bin").mtime == 0
        mod = tar.getmember("./app/.deps/lib/mod001.py")
    assert mod.mtime == (app / ".deps" / "lib" / "mod001.py").stat().st_mtime_ns // SECOND_NS


def test_damaged_or_uncacheable_layers_are_not_reused(tmp_path: Path) -> None:
    app = _tree(tmp_path / "app")
    cache = tmp_path / "cache"
    good = pack_slug(app, tmp_path / "a.tgz", level=LEVEL, layer_cache=cache)
    (stored,) = cache.glob("*.gz")
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    repacked = pack_slug(app, tmp_path / "b.tgz", level=LEVEL, layer_cache=cache)
    assert repacked.reused == () and repacked.sha256 == good.sha256
    assert (tmp_path / "b.tgz").read_bytes() == (tmp_path / "a.tgz").read_bytes()

    # A tree made afresh (files with one name, e.g. by npm ci): still its own member, but
    # nothing is kept; and the stored layer of a directory this build lacks is removed.
    fresh_app = _tree(tmp_path / "fresh-app", linked=False)
    other = tmp_path / "other-cache"
    made = pack_slug(fresh_app, tmp_path / "c.tgz", level=LEVEL, layer_cache=other)
    assert made.layers == (".deps",) and not other.exists()
    shutil.rmtree(app / ".deps")
    pack_slug(app, tmp_path / "d.tgz", level=LEVEL, layer_cache=cache)
    assert list(cache.iterdir()) == []


def test_cache_round_trip_keeps_exact_mtimes_so_layers_are_reused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    deps = _tree(cache / "deps")
    fine = deps / ".deps" / "lib" / "mod001.py"
    os.utime(fine, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    pack_slug(deps, tmp_path / "a.tgz", level=LEVEL, layer_cache=cache / "layers")
    packed = tmp_path / "cache.tgz"
    pack_directory(cache, packed, compresslevel=1)
    restored = tmp_path / "restored"
    extract_tarball(packed, restored)
    assert (restored / "deps" / ".deps" / "lib" / "mod001.py").stat().st_mtime_ns == (
        1_700_000_000_123_456_789
    )
    before = {p.relative_to(cache): p.lstat().st_mtime_ns for p in cache.rglob("*")}
    after = {p.relative_to(restored): p.lstat().st_mtime_ns for p in restored.rglob("*")}
    assert after == before
    again = pack_slug(
        restored / "deps", tmp_path / "b.tgz", level=LEVEL, layer_cache=restored / "layers"
    )
    assert again.reused == (".deps",)
    assert (tmp_path / "b.tgz").read_bytes() == (tmp_path / "a.tgz").read_bytes()


def test_gzip_members_concatenate(tmp_path: Path) -> None:
    slug = tmp_path / "s.tgz"
    pack_slug(_tree(tmp_path / "app"), slug, level=LEVEL)
    raw = gzip.decompress(slug.read_bytes())
    assert len(raw) % 10240 == 0 and raw.endswith(bytes(1024))


@pytest.fixture
def deps_buildpack(tmp_path: Path) -> Path:
    """A buildpack that 'installs' a large .deps dir, cached like the python buildpack's venv."""
    root = tmp_path / "buildpacks"
    bp = root / "deps" / "bin"
    bp.mkdir(parents=True)
    (bp / "detect").write_text("#!/usr/bin/env bash\necho Deps\n")
    (bp / "compile").write_text(
        '#!/usr/bin/env bash\nset -euo pipefail\ncd "$1"\n'
        'if [ -d "$2/deps" ]; then cp -al "$2/deps" .deps; echo "       deps from cache"\n'
        "else mkdir -p .deps/lib\n"
        '  for i in $(seq 1 250); do echo "v$i" > .deps/lib/m$i.txt; done\n'
        '  cp -al .deps "$2/deps"; fi\n'
    )
    (bp / "release").write_text("#!/usr/bin/env bash\necho '--- {}'\n")
    for script in bp.iterdir():
        script.chmod(0o755)
    return root


def test_warm_build_reuses_the_layer_after_a_cache_round_trip(
    build: BuildFn, deps_buildpack: Path, tmp_path: Path, unpack: Callable[[Path, Path], Path]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / ".buildpacks").write_text("deps\n")
    (src / "Procfile").write_text("web: cat .deps/lib/m1.txt\n")
    cold = build(src, cache_dir=tmp_path / "c1", buildpacks_dir=deps_buildpack)
    assert "Reused unchanged" not in cold.output
    assert (tmp_path / "c1" / ".nomadpaas" / "slug-layers").is_dir()
    # As the build task does: the cache travels as a tarball between builds.
    pack_directory(tmp_path / "c1", tmp_path / "cache.tgz", compresslevel=1)
    extract_tarball(tmp_path / "cache.tgz", tmp_path / "c2")
    (src / "Procfile").write_text("web: cat .deps/lib/m2.txt\n")  # a code-only change
    warm = build(src, cache_dir=tmp_path / "c2", buildpacks_dir=deps_buildpack)
    assert "deps from cache" in warm.output
    assert "Reused unchanged .deps from the build cache" in warm.output
    slug = warm.result.slug_path
    # Packed again from the same build dir without the cache: the very same bytes.
    epoch = max(p.stat().st_mtime_ns for p in src.iterdir())
    fresh = pack_slug(
        tmp_path / "work1" / "app", tmp_path / "fresh.tgz", level=LEVEL, source_epoch_ns=epoch
    )
    assert fresh.sha256 == warm.result.metadata.sha256
    app = unpack(slug, tmp_path / "run")
    assert (app / ".deps" / "lib" / "m2.txt").read_text() == "v2\n"
    assert (app / "Procfile").read_text() == "web: cat .deps/lib/m2.txt\n"


def test_an_unchanged_app_rebuilds_to_the_same_slug(
    build: BuildFn, deps_buildpack: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / ".buildpacks").write_text("deps\n")
    (src / "Procfile").write_text("web: cat .deps/lib/m1.txt\n")
    source_date = 1_600_000_000
    for path in src.iterdir():
        os.utime(path, (source_date, source_date))
    cold = build(src, cache_dir=tmp_path / "c0", buildpacks_dir=deps_buildpack)
    with tarfile.open(cold.result.slug_path) as tar:
        # Written by the build outside the layers: the source's date, not the build's.
        assert tar.getmember("./app/.nomadpaas/start").mtime == source_date
        assert tar.getmember("./app/Procfile").mtime == source_date
        assert tar.getmember("./app/.deps/lib/m1.txt").mtime > source_date  # its own
    pack_directory(tmp_path / "c0", tmp_path / "cache.tgz", compresslevel=1)
    digests = []
    for n in (1, 2):
        extract_tarball(tmp_path / "cache.tgz", tmp_path / f"c{n}")
        again = build(src, cache_dir=tmp_path / f"c{n}", buildpacks_dir=deps_buildpack)
        assert "Reused unchanged .deps" in again.output
        digests.append(again.result.metadata.sha256)
    assert digests[0] == digests[1] == cold.result.metadata.sha256
