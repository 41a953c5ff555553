"""plaintar.py extracts what archive.extract_tarball extracts, the same way, or defers to it.

Every archive here is extracted twice, by `extract_plain_tarball` and by the reference
`archive.extract_tarball`, and the two results are compared entry by entry (type, mode,
size, content, link target, mtime to the nanosecond); a spy tells whether the fast path
or the tarfile path did the work.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from testsupport import run_isolated_python

import nomadpaas
from nomadpaas.slugbuilder import archive, plaintar
from nomadpaas.slugbuilder.archive import ArchiveError, ExtractLimits, extract_tarball
from nomadpaas.slugbuilder.plaintar import extract_plain_tarball

ROOT = str(Path(nomadpaas.__file__).resolve().parent.parent)

Member = tuple[tarfile.TarInfo, bytes | None]
#: mtimes (ns) from here on were set by the extraction itself, not taken from a member.
FRESH_NS = 1_700_000_000 * 10**9


def _info(name: str, kind: bytes = tarfile.REGTYPE, **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def _file(name: str, data: bytes = b"data", **fields: object) -> Member:
    return _info(name, size=len(data), **fields), data


def _dir(name: str, **fields: object) -> Member:
    return _info(name, tarfile.DIRTYPE, **fields), None


def _link(name: str, target: str, **fields: object) -> Member:
    return _info(name, tarfile.SYMTYPE, linkname=target, mode=0o777, **fields), None


def _tar(
    path: Path, members: list[Member], *, fmt: int = tarfile.PAX_FORMAT, gz: bool = True
) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    body = raw.getvalue()
    path.write_bytes(gzip.compress(body, mtime=0) if gz else body)
    return path


def _tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under `root` with what extraction decides (and root's mode)."""
    found: dict[str, tuple[object, ...]] = {".": ("dir", stat.S_IMODE(root.stat().st_mode))}
    for entry in sorted(root.rglob("*")):
        st = entry.lstat()
        rel = entry.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            mtime = "now" if st.st_mtime_ns >= FRESH_NS else st.st_mtime_ns  # (not restored)
            found[rel] = ("link", os.readlink(entry), mtime)
        elif stat.S_ISDIR(st.st_mode):
            # A parent no member names is made when its first child is: "now", which
            # differs between two extractions. Members here are all older than that.
            mtime = "now" if st.st_mtime_ns >= FRESH_NS else st.st_mtime_ns
            found[rel] = ("dir", stat.S_IMODE(st.st_mode), mtime)
        else:
            content = entry.read_bytes()
            found[rel] = ("file", stat.S_IMODE(st.st_mode), content, st.st_mtime_ns)
    return found


@pytest.fixture
def tarfile_path_used(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records each time plaintar deferred to archive.extract_tarball (the reference
    calls in `_both` go to it directly, unseen)."""
    calls: list[str] = []
    real = archive.extract_tarball

    def spy(tarball: str, dest: str, **kwargs: object) -> int:
        calls.append(os.path.basename(tarball))
        return real(tarball, dest, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(archive, "extract_tarball", spy)
    yield calls


def _both(tmp_path: Path, tarball: Path, limits: ExtractLimits | None = None) -> tuple[object, ...]:
    """(outcome, tree) of the fast path and of the reference, on fresh destinations."""
    results = []
    for name, extract in (("fast", extract_plain_tarball), ("reference", extract_tarball)):
        dest = tmp_path / f"out-{name}-{tarball.name}"
        outcome: object
        try:
            outcome = extract(tarball, dest, limits=limits)
        except ArchiveError as exc:
            outcome = f"ArchiveError: {exc}".replace(str(dest), "<dest>")
        results.append((outcome, _tree(dest) if dest.exists() else None))
    return tuple(results)


PLAIN: dict[str, list[Member]] = {
    "files and dirs": [
        _dir("app", mtime=1_600_000_000),
        _file("app/main.py", b"print(1)\n", mtime=1_600_000_001),
        _file("app/run.sh", b"#!/bin/sh\n", mode=0o755),
        _file("empty"),
        _file("Procfile", b"web: python app/main.py\n"),
    ],
    "odd modes": [
        _file("setuid", mode=0o4777),
        _file("group-x-only", mode=0o070),
        _file("none", mode=0o000),
        _file("owner-x", mode=0o100),
        _dir("open", mode=0o777),
    ],
    "implicit parents and late dirs": [
        _file("a/b/c/deep.txt", b"deep"),
        _dir("a/b", mtime=123),
        _dir("a", mtime=456),
    ],
    "symlinks": [
        _dir("lib"),
        _file("lib/real.py", b"x = 1\n"),
        _link("alias.py", "lib/real.py", mtime=1_500_000_000),
        _link("lib/up", "../alias.py"),
        _link("dangling", "lib/missing/deeper"),
        _link("chain", "alias.py"),
    ],
    "long and unicode names (pax)": [
        _file("d/" + "n" * 150 + ".txt", b"long"),
        _file("données/ümlaut.txt", b"u"),
        _link("l" * 120, "d/" + "n" * 150 + ".txt"),
    ],
    "bigger file": [_file("blob.bin", os.urandom(300_000))],
}


@pytest.mark.parametrize("case", sorted(PLAIN))
def test_plain_archives_are_extracted_as_the_tarfile_path_does(
    case: str, tmp_path: Path, tarfile_path_used: list[str]
) -> None:
    tarball = _tar(tmp_path / "src.tar.gz", PLAIN[case])
    fast, reference = _both(tmp_path, tarball)
    assert fast == reference
    assert fast[0] == len(PLAIN[case])
    assert tarfile_path_used == []  # the fast path did not defer


def test_ustar_format_and_a_pushed_source_take_the_fast_path(
    tmp_path: Path, tarfile_path_used: list[str]
) -> None:
    from nomadpaas.sourcepack import pack_source

    tarball = _tar(tmp_path / "ustar.tar.gz", PLAIN["files and dirs"], fmt=tarfile.USTAR_FORMAT)
    fast, reference = _both(tmp_path, tarball)
    assert fast == reference and tarfile_path_used == []

    app = tmp_path / "app"
    (app / "pkg").mkdir(parents=True)
    (app / "pkg" / "__init__.py").write_text("")
    (app / "app.py").write_text("print('hi')\n")
    (app / "run").write_text("#!/bin/sh\n")
    (app / "run").chmod(0o755)
    (app / "link").symlink_to("app.py")
    packed = pack_source(app, tmp_path / "pushed.tar.gz")
    tarfile_path_used.clear()
    fast, reference = _both(tmp_path, Path(packed.path))
    assert fast == reference and tarfile_path_used == []


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _with_bytes(path: Path, edit: Callable[[bytearray], None]) -> Path:
    """Re-gzip `path`'s tar after `edit` changed its bytes."""
    data = bytearray(gzip.decompress(path.read_bytes()))
    edit(data)
    path.write_bytes(gzip.compress(bytes(data), mtime=0))
    return path


NOT_PLAIN: dict[str, Callable[[Path], Path]] = {
    "hardlink": lambda p: _tar(p, [_file("a"), (_info("b", tarfile.LNKTYPE, linkname="a"), None)]),
    "absolute symlink": lambda p: _tar(p, [_link("l", "/etc/passwd")]),
    "symlink leaving": lambda p: _tar(p, [_link("d/l", "../../x")]),
    "symlink through a symlink": lambda p: _tar(
        p, [_dir("d"), _link("d/up", ".."), _link("d/esc", "up/..")]
    ),
    "member below a symlink": lambda p: _tar(p, [_link("d", "."), _file("d/x")]),
    "member below a file": lambda p: _tar(p, [_file("f"), _file("f/x")]),
    "dotdot name": lambda p: _tar(p, [_file("../evil")]),
    "absolute name": lambda p: _tar(p, [_file("/abs")]),
    "dot-slash names": lambda p: _tar(p, [_dir("."), _file("./a")]),
    "duplicate": lambda p: _tar(p, [_file("a", b"1"), _file("a", b"2")]),
    "fifo": lambda p: _tar(p, [(_info("fifo", tarfile.FIFOTYPE), None)]),
    "gnu long name": lambda p: _tar(p, [_file("g" * 150)], fmt=tarfile.GNU_FORMAT),
    "pax mtime": lambda p: _tar(p, [_file("t", pax_headers={"mtime": "12.5"})]),
    "plain tar, not gzip": lambda p: _tar(p, [_file("a")], gz=False),
    "two gzip members": lambda p: _write(
        p, gzip.compress(_tar(p, [_file("a")], gz=False).read_bytes()) + gzip.compress(b"\0" * 1024)
    ),
    "trailing garbage": lambda p: _with_bytes(_tar(p, [_file("a")]), lambda d: d.extend(b"junk")),
    "bad checksum in the second header": lambda p: _with_bytes(
        _tar(p, [_file("a"), _file("b")]), lambda d: d.__setitem__(1024 + 148, ord("7"))
    ),
    "cut short": lambda p: _write(
        p, gzip.compress(gzip.decompress(_tar(p, [_file("a", b"x" * 2000)]).read_bytes())[:1100])
    ),
    "not a tarball": lambda p: _write(p, gzip.compress(b"hello")),
    "empty archive": lambda p: _tar(p, []),
}


@pytest.mark.parametrize("case", sorted(NOT_PLAIN))
def test_anything_else_gets_the_tarfile_path_s_outcome(
    case: str, tmp_path: Path, tarfile_path_used: list[str]
) -> None:
    tarball = NOT_PLAIN[case](tmp_path / "odd.tar.gz")
    fast, reference = _both(tmp_path, tarball)
    assert fast == reference
    assert tarfile_path_used == ["odd.tar.gz"]  # the fast path deferred


def test_limits_are_the_tarfile_path_s(tmp_path: Path, tarfile_path_used: list[str]) -> None:
    tarball = _tar(tmp_path / "src.tar.gz", [_file("a", b"x" * 100), _file("b", b"y" * 100)])
    for limits in (
        ExtractLimits(max_members=1),
        ExtractLimits(max_member_bytes=99),
        ExtractLimits(max_total_bytes=150),
    ):
        fast, reference = _both(tmp_path / str(len(tarfile_path_used)), tarball, limits)
        assert fast == reference and str(fast[0]).startswith("ArchiveError")
    assert len(tarfile_path_used) == 3


def test_a_non_empty_destination_is_refused_before_anything(tmp_path: Path) -> None:
    tarball = _tar(tmp_path / "src.tar.gz", [_file("a")])
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "there").write_text("")
    with pytest.raises(ArchiveError, match="non-empty"):
        extract_plain_tarball(tarball, dest)
    assert sorted(os.listdir(dest)) == ["there"]


def test_too_large_archives_take_the_tarfile_path(
    tmp_path: Path, tarfile_path_used: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tarball = _tar(tmp_path / "big.tar.gz", [_file("a", b"z" * 20_000)])
    monkeypatch.setattr(plaintar, "MAX_PLAIN_BYTES", 10_000)
    assert extract_plain_tarball(tarball, tmp_path / "out") == 1
    assert tarfile_path_used == ["big.tar.gz"]
    assert (tmp_path / "out" / "a").read_bytes() == b"z" * 20_000


def test_a_gzip_with_a_bad_crc_is_not_read_as_plain(
    tmp_path: Path, tarfile_path_used: list[str]
) -> None:
    tarball = _tar(tmp_path / "crc.tar.gz", [_file("a")])
    data = bytearray(tarball.read_bytes())
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    tarball.write_bytes(bytes(data))
    with pytest.raises(zlib.error):
        zlib.decompress(bytes(data), 16 + zlib.MAX_WBITS)
    fast, reference = _both(tmp_path, tarball)
    assert fast == reference and tarfile_path_used == ["crc.tar.gz"]


def test_extracting_a_plain_source_imports_no_tarfile(tmp_path: Path) -> None:
    tarball = _tar(tmp_path / "src.tar.gz", PLAIN["files and dirs"])
    code = (
        f"import sys; sys.path.insert(0, {ROOT!r})\n"
        "from nomadpaas.slugbuilder.source import stage_source\n"
        f"stage_source({str(tarball)!r}, {str(tmp_path / 'out')!r})\n"
        "print(' '.join(sorted(set(sys.modules) & {'tarfile', 'shutil', 'gzip', 'bz2'})))\n"
    )
    assert run_isolated_python(code).strip() == ""
    assert (tmp_path / "out" / "app" / "main.py").read_bytes() == b"print(1)\n"
