"""Packing refuses what a slug must not contain; extraction refuses unsafe tarballs."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from nomadpaas.slugbuilder.archive import (
    ArchiveError,
    ExtractLimits,
    extract_tarball,
    pack_directory,
    sha256_file,
)
from nomadpaas.slugbuilder.tarwriter import Entry, encode_header


def _app(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "Procfile").write_text("web: x\n")
    (root / "sub" / "a.txt").write_text("a")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o4777)  # setuid + world-writable: both must go
    (root / "sub" / "rel").symlink_to("a.txt")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    return root


def test_pack_layout_modes_and_round_trip(tmp_path: Path) -> None:
    src = _app(tmp_path / "src")
    slug = tmp_path / "slug.tar.gz"
    stats = pack_directory(src, slug, prefix="app")
    assert stats.sha256 == sha256_file(slug) and stats.compressed_bytes == slug.stat().st_size
    with tarfile.open(slug) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {
        "./app", "./app/Procfile", "./app/run.sh", "./app/sub", "./app/sub/a.txt", "./app/sub/rel",
    }  # fmt: skip
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "" for m in members.values())
    assert members["./app/run.sh"].mode & 0o7777 == 0o755
    assert members["./app/sub/rel"].issym() and members["./app/sub/rel"].linkname == "a.txt"
    dest = tmp_path / "elsewhere"
    extract_tarball(slug, dest)
    assert (dest / "app" / "sub" / "rel").read_text() == "a"
    assert os.access(dest / "app" / "run.sh", os.X_OK)


@pytest.mark.parametrize(
    ("make_link", "fragment"),
    [
        (lambda app: (app / "py").symlink_to("/usr/bin/python3"), "absolute path"),
        (lambda app: (app / "up").symlink_to("../../etc/passwd"), "leaving the app"),
    ],
)
def test_pack_refuses_links_that_point_outside(
    tmp_path: Path, make_link: Callable[[Path], None], fragment: str
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    make_link(app)
    with pytest.raises(ArchiveError, match=fragment):
        pack_directory(app, tmp_path / "s.tar.gz", prefix="app")


def test_pack_refuses_fifos(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    os.mkfifo(app / "pipe")
    with pytest.raises(ArchiveError, match="special file"):
        pack_directory(app, tmp_path / "s.tar.gz")


def _tarball(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    ("members", "fragment"),
    [
        ([(_member("../evil"), b"x")], "leaves the destination"),
        ([(_member("/etc/evil"), b"x")], "leaves the destination"),
        ([(_member("a/../../evil"), b"x")], "leaves the destination"),
        ([(_member("l", tarfile.SYMTYPE, "/etc"), None)], "leaves the archive"),
        ([(_member("l", tarfile.SYMTYPE, "../.."), None)], "leaves the archive"),
        ([(_member("h", tarfile.LNKTYPE, "/etc/passwd"), None)], "leaves the destination"),
        ([(_member("h", tarfile.LNKTYPE, "later"), None), (_member("later"), b"x")], "hardlink"),
        ([(_member("dev", tarfile.CHRTYPE), None)], "special files"),
        ([(_member("fifo", tarfile.FIFOTYPE), None)], "special files"),
    ],
)
def test_extract_refuses_unsafe_members(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], fragment: str
) -> None:
    bad = _tarball(tmp_path / "bad.tar.gz", members)
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError, match=fragment):
        extract_tarball(bad, dest)
    assert not dest.exists() or not any(dest.iterdir())  # nothing written


def test_extract_enforces_limits(tmp_path: Path) -> None:
    many = _tarball(tmp_path / "m.tar.gz", [(_member(f"f{i}"), b"12345") for i in range(5)])
    with pytest.raises(ArchiveError, match="more than 3 members"):
        extract_tarball(many, tmp_path / "d1", limits=ExtractLimits(max_members=3))
    with pytest.raises(ArchiveError, match="bytes uncompressed"):
        extract_tarball(many, tmp_path / "d2", limits=ExtractLimits(max_total_bytes=12))
    with pytest.raises(ArchiveError, match="per-file limit"):
        extract_tarball(many, tmp_path / "d3", limits=ExtractLimits(max_member_bytes=4))


def test_extract_refuses_symlinks_when_told_and_non_empty_dest(tmp_path: Path) -> None:
    tb = _tarball(tmp_path / "s.tar.gz", [(_member("l", tarfile.SYMTYPE, "x"), None)])
    with pytest.raises(ArchiveError, match="symlinks are not accepted"):
        extract_tarball(tb, tmp_path / "d", allow_symlinks=False)
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    with pytest.raises(ArchiveError, match="non-empty"):
        extract_tarball(tb, full)


def test_extract_refuses_garbage(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball at all")
    with pytest.raises(ArchiveError, match="not a readable tarball"):
        extract_tarball(junk, tmp_path / "d")


@pytest.mark.parametrize(
    ("name", "kind", "size", "link"),
    [
        ("./app/Procfile", tarfile.REGTYPE, 12, ""),
        ("./app/sub/", tarfile.DIRTYPE, 0, ""),
        ("./app/bin/python", tarfile.SYMTYPE, 0, "python3.11"),
        ("./app/b", tarfile.LNKTYPE, 0, "./app/a"),
    ],
)
def test_plain_headers_equal_tarfiles(name: str, kind: bytes, size: int, link: str) -> None:
    entry = Entry(name, kind, 0o755, size, 1_700_000_000 * 10**9, link, "")
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime, info.linkname = (
        kind,
        0o755,
        size,
        1_700_000_000,
        link,
    )
    expected = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    assert encode_header(name, entry, link, 1_700_000_000 * 10**9) == expected


def test_names_ustar_cannot_hold_still_read_back(tmp_path: Path) -> None:
    app = tmp_path / "app"
    deep = app / ("d" * 60) / ("e" * 60) / ("f" * 60)  # > 100 bytes: ustar prefix
    deep.mkdir(parents=True)
    (deep / "x.txt").write_text("prefix")
    (app / ("g" * 120)).write_text("no slash to split at: PAX path")
    (app / "ünï.txt").write_text("non-ASCII: PAX path")
    (app / "\udcff-raw").write_text("undecodable name: PAX with hdrcharset")
    (app / "long-link").symlink_to(("d" * 60) + "/" + ("e" * 60) + "/" + ("f" * 60) + "/x.txt")
    os.utime(deep / "x.txt", ns=(5, 5))  # sub-second and tiny: exact PAX mtime
    slug = tmp_path / "s.tar.gz"
    pack_directory(app, slug)
    dest = tmp_path / "out"
    extract_tarball(slug, dest)
    for path in app.rglob("*"):
        rel = path.relative_to(app)
        assert (dest / rel).is_symlink() == path.is_symlink(), rel
        if path.is_file() and not path.is_symlink():
            assert (dest / rel).read_bytes() == path.read_bytes()
            assert (dest / rel).stat().st_mtime_ns == path.stat().st_mtime_ns
    assert (dest / "long-link").read_text() == "prefix"
    if shutil.which("tar"):
        listed = subprocess.run(
            ["tar", "-tzf", str(slug)], capture_output=True, timeout=60, check=True
        ).stdout.decode("utf-8", "surrogateescape")
        assert "./" + "g" * 120 in listed.splitlines() and "./ünï.txt" in listed.splitlines()
