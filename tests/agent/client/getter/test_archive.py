"""Hardened unpacking: every crafted attack is refused with nothing written outside."""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
from pathlib import Path

import pytest
from agent.client.getter.archive_factory import (
    Entry,
    directory,
    file,
    hardlink,
    make_tar,
    make_tar_declaring,
    make_zip,
    symlink,
)

from nomadpaas.agent.client.getter.archive import (
    ArchiveError,
    ArchiveLimits,
    detect_format,
    unpack,
)
from nomadpaas.agent.client.getter.archivecheck import normalize_name


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """tmp/dest (the destination) next to tmp/sibling (must never change)."""
    (tmp_path / "sibling").mkdir()
    (tmp_path / "sibling" / "target").write_text("precious")
    return tmp_path


def assert_refused(work: Path, archive: Path, fmt: str, match: str, **limits: int) -> None:
    before = snapshot(work)
    dest = work / "dest"
    with pytest.raises(ArchiveError, match=match):
        unpack(archive, dest, fmt, limits=ArchiveLimits(**limits))  # type: ignore[arg-type]
    assert snapshot(work) == before, "something was written"
    assert (work / "sibling" / "target").read_text() == "precious"


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([file("../evil")], r'archive member "\.\./evil" escapes the destination'),
        ([file("a/../../evil")], r'"a/\.\./\.\./evil" escapes the destination'),
        ([file("/abs/evil")], r'"/abs/evil" is an absolute path'),
        (
            [symlink("link", "/etc/passwd")],
            r'"link" is a symlink to an absolute path "/etc/passwd"',
        ),
        ([symlink("link", "../sibling")], r'"link" is a symlink to "\.\./sibling", which escapes'),
        ([directory("d"), symlink("d/up", "../../sibling")], r'"d/up" is a symlink .* escapes'),
        # Write-through: an in-tree link, then a member written beneath it.
        (
            [directory("sub"), symlink("d", "sub"), file("d/evil")],
            r'"d/evil" is beneath symlink "d"',
        ),
        ([symlink("d", "../sibling"), file("d/evil")], r"beneath symlink|escapes"),
        # Two-step, both orders: lexically inside, but `a -> .` makes a/.. leave the tree.
        (
            [symlink("a", "."), symlink("x", "a/../z")],
            r'"x" is a symlink to "a/\.\./z", which escapes',
        ),
        (
            [symlink("x", "a/../z"), symlink("a", ".")],
            r'"x" is a symlink to "a/\.\./z", which escapes',
        ),
        ([symlink("loop", "loop/x")], r'"loop" is a symlink .* escapes'),
        ([hardlink("h", "../sibling/target")], r'"h" is a hardlink outside|not an earlier regular'),
        ([hardlink("h", "/etc/passwd")], r'"h" is a hardlink outside the archive'),
        ([hardlink("h", "later"), file("later")], r'"h" is a hardlink to "later"'),
        ([file("f"), symlink("s", "f"), hardlink("h", "s")], r'"h" is a hardlink to "s"'),
        ([Entry("dev", "chr")], r'"dev" is a device, FIFO'),
        ([Entry("pipe", "fifo")], r'"pipe" is a device, FIFO'),
        ([file("dup", b"1"), file("dup", b"2")], r'"dup" appears more than once'),
        ([file("f"), file("f/g")], r'"f/g" is beneath non-directory member "f"'),
    ],
)
def test_crafted_tar_is_refused_without_writing(
    work: Path, entries: list[Entry], match: str
) -> None:
    archive = make_tar(work / "evil.tar.gz", entries)
    assert_refused(work, archive, "tar.gz", match)


def test_refusal_after_harmless_members_writes_nothing_at_all(work: Path) -> None:
    archive = make_tar(work / "a.tgz", [file("ok1"), file("ok2"), file("../evil")])
    assert_refused(work, archive, "tgz", "escapes the destination")
    assert not (work / "dest").exists()


def test_too_many_members_is_refused(work: Path) -> None:
    archive = make_tar(work / "many.tar", [file(f"f{i}") for i in range(11)], compression="")
    assert_refused(work, archive, "tar", "more than 10 members", max_members=10)


def test_member_larger_than_cap_is_refused(work: Path) -> None:
    archive = make_tar(work / "big.tar.gz", [file("big", b"x" * 2000)])
    assert_refused(
        work, archive, "tar.gz", r'"big" is too large \(2000 bytes', max_member_bytes=1000
    )


def test_declared_huge_size_is_refused_before_reading_data(work: Path) -> None:
    archive = make_tar_declaring(work / "bomb.tar", "bomb", 50 * 1024**3)
    assert_refused(work, archive, "tar", r'"bomb" is too large')


def test_running_total_is_capped(work: Path) -> None:
    archive = make_tar(work / "t.tar.xz", [file(f"f{i}", b"y" * 400) for i in range(3)], "xz")
    assert_refused(
        work, archive, "tar.xz", "more than 1000 bytes uncompressed", max_total_bytes=1000
    )


def test_symlinks_can_be_forbidden(work: Path) -> None:
    archive = make_tar(work / "s.tar.bz2", [file("a"), symlink("b", "a")], "bz2")
    assert_refused(work, archive, "tar.bz2", "symlinks are not allowed", allow_symlinks=False)  # type: ignore[arg-type]


def test_legit_slug_with_in_tree_relative_links_extracts(work: Path) -> None:
    entries = [
        directory("./"),
        directory("./app"),
        directory("./app/.venv/bin"),
        file("./app/.venv/bin/python3", b"#!interp", mode=0o755),
        symlink("./app/.venv/bin/python", "python3"),
        file("./app/node_modules/x/bin.js", b"console.log(1)"),
        symlink("./app/node_modules/.bin/x", "../x/bin.js"),
        symlink("./app/current", "."),
        file("./app/Procfile", b"web: python app.py"),
        hardlink("./app/Procfile.copy", "app/Procfile"),
    ]
    archive = make_tar(work / "slug.tgz", entries)
    dest = work / "dest"
    unpack(archive, dest, "tgz")
    assert os.readlink(dest / "app/.venv/bin/python") == "python3"
    assert (dest / "app/.venv/bin/python").read_bytes() == b"#!interp"
    assert os.access(dest / "app/.venv/bin/python3", os.X_OK)
    assert (dest / "app/node_modules/.bin/x").read_text() == "console.log(1)"
    assert (dest / "app/Procfile.copy").read_text() == "web: python app.py"
    assert (dest / "app/current/Procfile").exists()


def test_setuid_and_sticky_bits_are_stripped(work: Path) -> None:
    archive = make_tar(
        work / "suid.tar", [file("suid", b"x", mode=0o4755), file("sg", mode=0o3775)], ""
    )
    unpack(archive, work / "dest", "tar")
    for name in ("suid", "sg"):
        mode = (work / "dest" / name).stat().st_mode
        assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX)
    assert (work / "dest" / "suid").stat().st_mode & 0o100


def test_existing_symlink_in_destination_is_not_written_through(work: Path) -> None:
    dest = work / "dest"
    dest.mkdir()
    os.symlink("../sibling", dest / "out")  # left by something else earlier
    archive = make_tar(work / "a.tar.gz", [file("out/evil")])
    before = snapshot(work / "sibling")
    with pytest.raises(ArchiveError, match='"out/evil" escapes the destination'):
        unpack(archive, dest, "tar.gz")
    assert snapshot(work / "sibling") == before
    archive2 = make_tar(work / "b.tar.gz", [file("out", b"clobber")])
    with pytest.raises(ArchiveError, match='"out" would overwrite an existing symlink'):
        unpack(archive2, dest, "tar.gz")
    assert (work / "sibling" / "target").read_text() == "precious"


def test_unpacking_twice_into_the_same_dir_is_fine(work: Path) -> None:
    archive = make_tar(work / "a.tgz", [directory("d"), file("d/f", b"1")])
    unpack(archive, work / "dest", "tgz")
    unpack(archive, work / "dest", "tgz")
    assert (work / "dest/d/f").read_text() == "1"


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([file("../evil")], r'"\.\./evil" escapes the destination'),
        ([file("/abs")], r'"/abs" is an absolute path'),
        ([symlink("l", "/etc/passwd")], "symlink to an absolute path"),
        ([symlink("l", "../sibling"), file("l/x")], "beneath symlink|escapes"),
        ([Entry("p", "fifo")], "is a device, FIFO"),
    ],
)
def test_crafted_zip_is_refused(work: Path, entries: list[Entry], match: str) -> None:
    archive = make_zip(work / "evil.zip", entries)
    assert_refused(work, archive, "zip", match)


def test_zip_with_in_tree_symlink_extracts_and_masks_modes(work: Path) -> None:
    entries = [
        directory("bin"),
        file("bin/tool", b"#!/bin/sh\n", mode=0o4777),
        symlink("bin/t", "tool"),
        file("README", b"hi", mode=0o666),
    ]
    archive = make_zip(work / "ok.zip", entries)
    dest = work / "dest"
    unpack(archive, dest, "zip")
    assert os.readlink(dest / "bin/t") == "tool"
    assert stat.S_IMODE((dest / "bin/tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "README").stat().st_mode) == 0o644


def test_gz_needs_a_file_destination_like_go_getter(work: Path) -> None:
    archive = work / "log.gz"
    archive.write_bytes(gzip.compress(b"hello"))
    assert_refused(work, archive, "gz", "gzip-compressed files can only unarchive to a single file")
    unpack(archive, work / "out" / "log", "gz", dest_is_file=True)
    assert (work / "out" / "log").read_bytes() == b"hello"


def test_decompressed_single_file_is_capped(work: Path) -> None:
    archive = work / "bomb.gz"
    archive.write_bytes(gzip.compress(b"\0" * 10_000))
    with pytest.raises(ArchiveError, match="more than 1000 bytes"):
        unpack(archive, work / "out", "gz", dest_is_file=True,
               limits=ArchiveLimits(max_member_bytes=1000))  # fmt: skip
    assert not (work / "out").exists()


def test_tar_in_file_mode_must_hold_exactly_one_file(work: Path) -> None:
    one = make_tar(work / "one.tar.gz", [directory("./"), file("./tool", b"bin")])
    unpack(one, work / "tool", "tar.gz", dest_is_file=True)
    assert (work / "tool").read_bytes() == b"bin"
    two = make_tar(work / "two.tar.gz", [file("a"), file("b")])
    with pytest.raises(ArchiveError, match=r"expected a single file: two\.tar\.gz"):
        unpack(two, work / "x", "tar.gz", dest_is_file=True)


def test_zstd_is_refused_clearly_on_this_python(work: Path) -> None:
    archive = work / "a.tar.zst"
    archive.write_bytes(b"\x28\xb5\x2f\xfd")
    with pytest.raises(ArchiveError, match=r'"tar\.zst" is not supported: this Python has no zstd'):
        unpack(archive, work / "dest", "tar.zst")


def test_corrupt_archive_is_an_archive_error(work: Path) -> None:
    archive = work / "junk.tar.gz"
    archive.write_bytes(b"not gzip at all")
    assert_refused(work, archive, "tar.gz", "error unpacking junk.tar.gz")


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("/a/app.tar.gz", "tar.gz"),
        ("/a/app.tgz", "tgz"),
        ("/x.tar.bz2", "tar.bz2"),
        ("/x.tar.xz", "tar.xz"),
        ("/x.tar.zst", "tar.zst"),
        ("/x.zip", "zip"),
        ("/x.gz", "gz"),
        ("/x.tar", "tar"),
        ("/x.txt", None),
        ("/tar.gz/file", None),
    ],
)
def test_detect_format_uses_the_longest_suffix(path: str, fmt: str | None) -> None:
    assert detect_format(path) == fmt


def test_normalize_name_refuses_nul_and_long_names() -> None:
    with pytest.raises(ArchiveError, match="NUL byte"):
        normalize_name("a\x00b", ArchiveLimits())
    with pytest.raises(ArchiveError, match="too long"):
        normalize_name("a" * 5000, ArchiveLimits())
    assert normalize_name("./a//b/./c", ArchiveLimits()) == "a/b/c"


def test_huge_pax_header_is_refused_without_reading_it_into_memory(work: Path) -> None:
    size = 20 * 1024 * 1024
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = size
    raw = info.tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * (size + 1024)
    archive = work / "pax.tar.gz"
    archive.write_bytes(gzip.compress(raw))
    assert_refused(work, archive, "tar.gz", "header larger than 16 MiB")
