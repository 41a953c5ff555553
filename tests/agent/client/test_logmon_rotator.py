"""FileRotator: numbering, size limit, MaxFiles purge, no split lines, append after restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nomadpaas.agent.client.logmon.rotator import MAX_PENDING_BYTES, FileRotator


def _files(d: Path, base: str = "web.stdout") -> dict[int, bytes]:
    out = {}
    for p in d.iterdir():
        if p.name.startswith(base + ".") and p.name.rsplit(".", 1)[1].isdigit():
            out[int(p.name.rsplit(".", 1)[1])] = p.read_bytes()
    return dict(sorted(out.items()))


def test_rotates_at_size_without_splitting_lines(tmp_path: Path) -> None:
    r = FileRotator(str(tmp_path), "web.stdout", max_files=100, file_size_bytes=25)
    lines = [f"line {i:03d}\n".encode() for i in range(10)]  # 9 bytes each
    r.write(b"".join(lines[:5]))
    for line in lines[5:]:
        r.write(line)
    r.close()
    files = _files(tmp_path)
    assert list(files) == [0, 1, 2, 3, 4]
    for body in files.values():
        assert len(body) <= 25
        assert body.endswith(b"\n")
        assert len(body) == 18  # two whole lines; a third would have crossed 25
    assert b"".join(files.values()) == b"".join(lines)


def test_max_files_keeps_only_the_newest(tmp_path: Path) -> None:
    r = FileRotator(str(tmp_path), "web.stdout", max_files=3, file_size_bytes=10)
    for i in range(10):
        r.write(f"msg {i:04d}\n".encode())  # exactly 10 bytes: one per file
    r.close()
    files = _files(tmp_path)
    assert list(files) == [7, 8, 9]
    assert files[9] == b"msg 0009\n"


def test_a_line_longer_than_a_file_is_split_only_then(tmp_path: Path) -> None:
    r = FileRotator(str(tmp_path), "web.stdout", max_files=10, file_size_bytes=8)
    r.write(b"ab\n")
    r.write(b"0123456789abcdef\n")
    r.close()
    files = _files(tmp_path)
    # The long line starts in a fresh file rather than after "ab\n".
    assert files[0] == b"ab\n"
    assert b"".join(files.values()) == b"ab\n0123456789abcdef\n"
    assert all(len(b) <= 8 for b in files.values())


def test_partial_line_waits_for_newline_or_flush(tmp_path: Path) -> None:
    r = FileRotator(str(tmp_path), "web.stdout", max_files=10, file_size_bytes=1000)
    r.write(b"complete\npart")
    assert _files(tmp_path)[0] == b"complete\n"
    assert r.has_pending()
    r.write(b"ial\n")
    assert _files(tmp_path)[0] == b"complete\npartial\n"
    r.write(b"tail")
    r.flush()
    assert _files(tmp_path)[0] == b"complete\npartial\ntail"
    assert not r.has_pending()
    r.close()


def test_huge_partial_line_is_written_without_newline(tmp_path: Path) -> None:
    size = 10 * MAX_PENDING_BYTES
    r = FileRotator(str(tmp_path), "web.stdout", max_files=10, file_size_bytes=size)
    r.write(b"x" * MAX_PENDING_BYTES)
    assert not r.has_pending()
    r.close()


def test_reopen_appends_to_the_highest_file(tmp_path: Path) -> None:
    r = FileRotator(str(tmp_path), "web.stdout", max_files=10, file_size_bytes=20)
    r.write(b"aaaaaaaaa\nbbbbbbbbb\ncccc\n")
    r.close()
    assert list(_files(tmp_path)) == [0, 1]
    again = FileRotator(str(tmp_path), "web.stdout", max_files=10, file_size_bytes=20)
    assert again.index == 1
    again.write(b"dddd\n")
    again.close()
    files = _files(tmp_path)
    assert files[1] == b"cccc\ndddd\n"
    assert list(files) == [0, 1]


def test_reopen_of_a_full_file_rotates_on_next_write(tmp_path: Path) -> None:
    (tmp_path / "web.stdout.4").write_bytes(b"x" * 20)
    r = FileRotator(str(tmp_path), "web.stdout", max_files=10, file_size_bytes=20)
    r.write(b"next\n")
    r.close()
    assert _files(tmp_path)[5] == b"next\n"


def test_reopen_purges_beyond_max_files_and_ignores_other_streams(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"web.stdout.{i}").write_bytes(b"old\n")
    (tmp_path / "web.stderr.0").write_bytes(b"err\n")
    (tmp_path / "web.stdout.fifo").write_bytes(b"")
    FileRotator(str(tmp_path), "web.stdout", max_files=2, file_size_bytes=100).close()
    assert list(_files(tmp_path)) == [3, 4]
    assert (tmp_path / "web.stderr.0").exists()


def test_fresh_creates_the_first_file_and_writes_from_its_start(tmp_path: Path) -> None:
    r = FileRotator(str(tmp_path), "web.stdout", max_files=10, file_size_bytes=20, fresh=True)
    assert r.index == 0
    r.write(b"one\n")
    r.close()
    assert _files(tmp_path) == {0: b"one\n"}


def test_fresh_with_files_there_after_all_appends_to_the_highest(tmp_path: Path) -> None:
    # `fresh` is the caller's belief (a new FIFO): files found anyway are never overwritten.
    (tmp_path / "web.stdout.0").write_bytes(b"zero\n")
    (tmp_path / "web.stdout.1").write_bytes(b"old\n")
    r = FileRotator(str(tmp_path), "web.stdout", max_files=10, file_size_bytes=20, fresh=True)
    assert r.index == 1
    r.write(b"new\n")
    r.close()
    assert _files(tmp_path) == {0: b"zero\n", 1: b"old\nnew\n"}


@pytest.mark.parametrize("fresh", [False, True])
def test_files_are_created_without_following_symlinks(tmp_path: Path, fresh: bool) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"")
    logs = tmp_path / "logs"
    logs.mkdir()
    os.symlink(target, logs / "web.stdout.0")
    with pytest.raises(OSError):
        FileRotator(str(logs), "web.stdout", max_files=2, file_size_bytes=100, fresh=fresh)


def test_invalid_limits_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        FileRotator(str(tmp_path), "web.stdout", max_files=0, file_size_bytes=10)


def _splice_all(r: FileRotator, data: bytes, chunk: int) -> None:
    """Feed `data` through a real pipe, `chunk` bytes per splice, as logmon does."""
    rfd, wfd = os.pipe()
    try:
        for i in range(0, len(data), chunk):
            os.write(wfd, data[i : i + chunk])
            assert r.splice_from(rfd, 1 << 16) == len(data[i : i + chunk])
    finally:
        os.close(rfd)
        os.close(wfd)


@pytest.mark.parametrize("chunk", [1, 7, 9, 40, 1000])
def test_splice_rotates_at_size_without_splitting_lines(tmp_path: Path, chunk: int) -> None:
    r = FileRotator(str(tmp_path), "web.stdout", max_files=100, file_size_bytes=25)
    data = b"".join(f"line {i:03d}\n".encode() for i in range(30))  # 9 bytes each
    _splice_all(r, data, chunk)
    files = _files(tmp_path)  # read before close: splice leaves nothing buffered in memory
    assert b"".join(files.values()) == data
    for index, body in files.items():
        assert len(body) <= 25
        if index != max(files):
            assert body.endswith(b"\n") and len(body) == 18
    r.close()


def test_splice_splits_only_a_line_longer_than_a_file(tmp_path: Path) -> None:
    r = FileRotator(str(tmp_path), "web.stdout", max_files=100, file_size_bytes=10)
    data = b"ab\n" + b"x" * 25 + b"\n" + b"cd\n"
    _splice_all(r, data, 64)
    files = _files(tmp_path)
    assert b"".join(files.values()) == data
    assert files[0] == b"ab\n"  # the long line starts in a fresh file
    assert all(len(body) <= 10 for body in files.values())
    r.close()
