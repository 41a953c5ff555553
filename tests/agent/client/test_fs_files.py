"""ls/stat/cat/readat: AllocFileInfo shape, Go-style modes and times, confinement."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from nomadpaas.agent.client.fs import FSError
from nomadpaas.agent.client.fsinfo import (
    cat,
    content_type,
    go_file_mode,
    go_time,
    list_dir,
    read_at,
    stat_path,
)


@pytest.fixture
def alloc(tmp_path: Path) -> Path:
    root = tmp_path / "allocroot"
    (root / "alloc/logs").mkdir(parents=True)
    (root / "alloc/logs/web.stdout.0").write_bytes(b"hello\n")
    (root / "web/local").mkdir(parents=True)
    (root / "web/local/bin.dat").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "outside").write_text("secret")
    return root


def test_ls_returns_alloc_file_info_sorted(alloc: Path) -> None:
    entries = list_dir(alloc, "/")
    assert [e["Name"] for e in entries] == ["alloc", "web"]
    assert set(entries[0]) == {"Name", "IsDir", "Size", "FileMode", "ModTime", "ContentType"}
    assert entries[0]["IsDir"] is True and entries[0]["FileMode"].startswith("d")
    logs = list_dir(alloc, "alloc/logs")
    assert logs[0]["Name"] == "web.stdout.0"
    assert logs[0]["Size"] == 6
    assert logs[0]["ContentType"] == "text/plain; charset=utf-8"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", logs[0]["ModTime"])


def test_stat_file_and_binary_content_type(alloc: Path) -> None:
    info = stat_path(alloc, "web/local/bin.dat")
    assert (info["Name"], info["IsDir"], info["ContentType"]) == (
        "bin.dat",
        False,
        "application/octet-stream",
    )
    assert stat_path(alloc, "/")["Name"] == "/"


@pytest.mark.parametrize(
    "path", ["../outside", "alloc/../../outside", "/../outside", "link/outside"]
)
def test_paths_cannot_leave_the_alloc_dir(alloc: Path, path: str) -> None:
    os.symlink("..", alloc / "link")
    with pytest.raises(FSError, match="Path escapes the alloc directory") as info:
        stat_path(alloc, path)
    assert info.value.code == 400
    with pytest.raises(FSError, match="Path escapes"):
        list(cat(alloc, path))


def test_missing_path_is_404(alloc: Path) -> None:
    with pytest.raises(FSError) as info:
        stat_path(alloc, "nope")
    assert info.value.code == 404


def test_cat_and_readat(alloc: Path) -> None:
    assert b"".join(cat(alloc, "alloc/logs/web.stdout.0")) == b"hello\n"
    assert b"".join(read_at(alloc, "alloc/logs/web.stdout.0", 1, 3)) == b"ell"
    assert b"".join(read_at(alloc, "alloc/logs/web.stdout.0", 4)) == b"o\n"
    with pytest.raises(FSError, match="is a directory"):
        cat(alloc, "alloc")


@pytest.mark.parametrize(
    ("mode", "text"),
    [
        (stat.S_IFREG | 0o644, "-rw-r--r--"),
        (stat.S_IFDIR | 0o755, "drwxr-xr-x"),
        (stat.S_IFLNK | 0o777, "Lrwxrwxrwx"),
        (stat.S_IFREG | stat.S_ISUID | 0o755, "urwxr-xr-x"),
        (stat.S_IFIFO | 0o600, "prw-------"),
    ],
)
def test_go_file_mode(mode: int, text: str) -> None:
    assert go_file_mode(mode) == text


def test_go_time_and_content_type() -> None:
    assert go_time(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert go_time(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert content_type(b"\x1f\x8b\x08\x00") == "application/x-gzip"
    assert content_type("héllo".encode()) == "text/plain; charset=utf-8"
