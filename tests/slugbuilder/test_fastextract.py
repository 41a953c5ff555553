"""Build-cache extraction with GNU tar after a header check: same tree as the Python path
for our own archives, and never more permissive than it for crafted ones."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from nomadpaas.slugbuilder import fastextract
from nomadpaas.slugbuilder.archive import (
    ArchiveError,
    ExtractLimits,
    extract_tarball,
    pack_directory,
)
from nomadpaas.slugbuilder.fastextract import extract_cache_tarball


def _tree(root: Path) -> Path:
    (root / "python" / "venv" / "bin").mkdir(parents=True)
    (root / "python" / "venv" / "lib" / "site").mkdir(parents=True)
    (root / "python" / "key").write_text("k1\n")
    script = root / "python" / "venv" / "bin" / "flask"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    (root / "python" / "venv" / "lib" / "site" / "mod.py").write_bytes(os.urandom(5000))
    (root / "python" / "venv" / "bin" / "python3").symlink_to("python")
    (root / "python" / "venv" / "lib64").symlink_to("lib")
    os.utime(root / "python" / "key", ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))
    return root


def _listing(root: Path) -> dict[str, tuple[int, int, int, str]]:
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        link = os.readlink(path) if path.is_symlink() else ""
        # Files' mtimes matter (the cache fingerprint); tarfile sets none on symlinks.
        mtime = st.st_mtime_ns if stat.S_ISREG(st.st_mode) else 0
        out[str(path.relative_to(root))] = (st.st_mode, st.st_size, mtime, link)
    return out


@pytest.fixture
def no_python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the Python extraction is used (the fast path must be taken)."""

    def refuse(*args: object, **kwargs: object) -> int:
        raise AssertionError("fell back to the Python path")

    monkeypatch.setattr(fastextract, "extract_tarball", refuse)


@pytest.mark.usefixtures("no_python_path")
def test_our_cache_archive_extracts_like_the_python_path(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    packed = tmp_path / "cache.tar.gz"
    pack_directory(src, packed, compresslevel=1)
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    count = extract_cache_tarball(packed, fast, scratch=tmp_path)
    assert count > 5
    extract_tarball(packed, slow)  # this module's name: the fixture patched fastextract's
    assert _listing(fast) == _listing(slow)
    assert (fast / "python" / "key").stat().st_mtime_ns == 1_600_000_000 * 10**9
    assert os.readlink(fast / "python" / "venv" / "lib64") == "lib"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no scratch


def _tarball(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _m(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    if kind == tarfile.DIRTYPE:
        info.mode = mode | 0o111 if mode == 0o644 else mode
    return info


SYM, LNK, DIR = tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE
UNSAFE = [
    [(_m("../evil"), b"x")],
    [(_m("/etc/evil"), b"x")],
    [(_m("a/../../evil"), b"x")],
    [(_m("l", SYM, "/etc"), None)],
    [(_m("l", SYM, "../.."), None)],
    [(_m("h", LNK, "/etc/passwd"), None)],
    [(_m("h", LNK, "later"), None), (_m("later"), b"x")],
    [(_m("dev", tarfile.CHRTYPE), None)],
    [(_m("fifo", tarfile.FIFOTYPE), None)],
    # A link that looks inside but resolves through another link to outside.
    [(_m("d", DIR), None), (_m("d/up", SYM, ".."), None), (_m("d/out", SYM, "up/.."), None)],
    # A write through a link (the two-step attack): a symlink, then a member below it.
    [(_m("l", SYM, "."), None), (_m("l/x"), b"x")],
]


@pytest.mark.parametrize("members", UNSAFE)
def test_never_more_permissive_than_the_python_path(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]
) -> None:
    bad = _tarball(tmp_path / "bad.tar.gz", members)
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    try:
        extract_tarball(bad, slow)
    except ArchiveError as exc:
        with pytest.raises(ArchiveError, match=str(exc).split(":")[0][:20]):
            extract_cache_tarball(bad, fast, scratch=tmp_path)
    else:  # the Python path accepts it (its data filter makes it safe): same tree here
        extract_cache_tarball(bad, fast, scratch=tmp_path)
    # Whatever the Python path wrote before refusing (its filter refuses some links only
    # when it meets them), this path wrote no more.
    assert _listing(fast) == (_listing(slow) if slow.exists() else {}) or not fast.exists()
    assert not (tmp_path / "evil").exists() and not Path("/etc/evil").exists()


def test_setuid_and_world_writable_modes_come_out_stripped(tmp_path: Path) -> None:
    tb = _tarball(tmp_path / "m.tar.gz", [(_m("s", mode=0o4777), b"#!/bin/sh\n")])
    extract_cache_tarball(tb, tmp_path / "d", scratch=tmp_path)
    assert stat.S_IMODE((tmp_path / "d" / "s").stat().st_mode) & 0o7022 == 0


def test_members_hidden_after_a_bad_header_are_not_extracted(tmp_path: Path) -> None:
    """tarfile stops at a corrupt header; GNU tar would skip it and read on."""
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = _m("ok")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = _m("evil")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    first = good.getvalue().rstrip(b"\0")
    first += b"\0" * (-len(first) % 512)
    raw = first + b"\x01" * 512 + evil.getvalue()
    tb = tmp_path / "hidden.tar.gz"
    tb.write_bytes(gzip.compress(raw))
    extract_cache_tarball(tb, tmp_path / "d", scratch=tmp_path)
    assert (tmp_path / "d" / "ok").read_bytes() == b"ok"
    assert not (tmp_path / "d" / "evil").exists()


def test_limits_hold_on_this_path_too(tmp_path: Path) -> None:
    bomb = _tarball(tmp_path / "b.tar.gz", [(_m("zeros"), b"\0" * 200_000)])
    with pytest.raises(ArchiveError, match=r"per-file limit|bytes uncompressed"):
        extract_cache_tarball(
            bomb, tmp_path / "d", scratch=tmp_path, limits=ExtractLimits(max_member_bytes=1000)
        )
    with pytest.raises(ArchiveError, match="bytes uncompressed"):
        extract_cache_tarball(
            bomb, tmp_path / "e", scratch=tmp_path, limits=ExtractLimits(max_total_bytes=1000)
        )


def test_garbage_and_a_full_destination_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball at all")
    with pytest.raises(ArchiveError, match="not a readable tarball"):
        extract_cache_tarball(junk, tmp_path / "d", scratch=tmp_path)
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    with pytest.raises(ArchiveError, match="non-empty"):
        extract_cache_tarball(junk, full, scratch=tmp_path)
