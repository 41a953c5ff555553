"""Log following across rotated files: offsets, clamping, rotation, truncation, deletion."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
from pathlib import Path

import pytest

from nomadpaas.agent.client.fs import (
    FileFollower,
    FSError,
    LogFollower,
    follow_sync,
    stream_body,
)
from nomadpaas.agent.client.lib.streamframer import FileEvent, LogChunk

LOGS = "alloc/logs"


def write_logs(alloc: Path, *contents: bytes, task: str = "web", kind: str = "stdout") -> None:
    (alloc / LOGS).mkdir(parents=True, exist_ok=True)
    for n, data in enumerate(contents):
        (alloc / LOGS / f"{task}.{kind}.{n}").write_bytes(data)


def drain(follower: LogFollower | FileFollower) -> bytes:
    """Everything a non-following reader yields."""
    return b"".join(
        i.data for i in follow_sync(follower, poll_s=0.01, timeout_s=30) if isinstance(i, LogChunk)
    )


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        ({"task": ""}, 400, "must provide task name"),
        ({"log_type": "stdin"}, 400, "must provide log type (stdout/stderr)"),
        ({"origin": "middle"}, 400, "origin must be start or end"),
        ({"task": "db", "task_names": ["web"]}, 400, 'unknown task name "db"'),
        ({"task_started": False}, 404, 'task "web" not started yet. No logs available'),
        ({"log_type": "stderr"}, 404, 'log entry for task "web" and log type "stderr" not found'),
    ],
)
def test_log_request_errors_use_nomads_words(
    tmp_path: Path, kwargs: dict[str, object], code: int, message: str
) -> None:
    write_logs(tmp_path, b"x")
    args: dict[str, object] = {"task": "web", "log_type": "stdout", "task_names": ["web"], **kwargs}
    task, log_type = args.pop("task"), args.pop("log_type")
    with pytest.raises(FSError) as info:
        LogFollower(tmp_path, str(task), str(log_type), **args)  # type: ignore[arg-type]
    assert (info.value.code, info.value.message) == (code, message)


@pytest.mark.parametrize(
    ("origin", "offset", "expected"),
    [
        ("start", 0, b"aaaabbbbcc"),
        ("start", 6, b"bbcc"),  # reaches into file 1
        ("start", 4, b"bbbbcc"),  # exactly the end of file 0 stays in file 0
        ("start", 999, b""),  # clamped at the end of the newest file
        ("end", 0, b""),
        ("end", 3, b"bcc"),  # reaches back into file 1
        ("end", 999, b"aaaabbbbcc"),  # clamped at the start of file 0
        ("start", -5, b"aaaabbbbcc"),
    ],
)
def test_origin_and_offset_pick_the_start(
    tmp_path: Path, origin: str, offset: int, expected: bytes
) -> None:
    write_logs(tmp_path, b"aaaa", b"bbbb", b"cc")
    assert drain(LogFollower(tmp_path, "web", "stdout", origin=origin, offset=offset)) == expected


def test_chunks_carry_file_and_offset_after_the_chunk(tmp_path: Path) -> None:
    write_logs(tmp_path, b"aaaa", b"bb")
    items = LogFollower(tmp_path, "web", "stdout", offset=1).poll()
    assert items == [
        LogChunk(f"{LOGS}/web.stdout.0", 4, b"aaa"),
        LogChunk(f"{LOGS}/web.stdout.1", 2, b"bb"),
    ]


def test_without_follow_stops_after_the_file_newest_at_the_start(tmp_path: Path) -> None:
    write_logs(tmp_path, b"old", b"new")
    follower = LogFollower(tmp_path, "web", "stdout")
    (tmp_path / LOGS / "web.stdout.2").write_bytes(b"later")
    assert drain(follower) == b"oldnew"


def test_follow_survives_rotation_and_every_line_arrives_once(tmp_path: Path) -> None:
    write_logs(tmp_path, b"")
    lines = [f"line {i:05d}\n".encode() for i in range(3000)]
    rotate_at = 4000  # bytes: about 8 rotations

    def writer() -> None:
        n, size = 0, 0
        out = open(tmp_path / LOGS / "web.stdout.0", "ab")  # noqa: SIM115
        for i, line in enumerate(lines):
            if size + len(line) > rotate_at:  # rotate like logmon: next file, never split a line
                out.close()
                n, size = n + 1, 0
                out = open(tmp_path / LOGS / f"web.stdout.{n}", "ab")  # noqa: SIM115
            out.write(line)
            out.flush()
            size += len(line)
            if i % 100 == 0:
                time.sleep(0.005)
        out.close()

    follower = LogFollower(tmp_path, "web", "stdout", follow=True)
    thread = threading.Thread(target=writer)
    thread.start()
    got = b""
    files_seen = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < sum(map(len, lines)) and time.monotonic() < deadline:
            items = follower.poll()
            for item in items:
                assert isinstance(item, LogChunk)
                got += item.data
                if item.file not in files_seen:
                    files_seen.append(item.file)
            if not items:
                time.sleep(0.01)
    finally:
        thread.join(timeout=30)
        follower.close()
    assert got == b"".join(lines)
    assert files_seen == [f"{LOGS}/web.stdout.{n}" for n in range(len(files_seen))]
    assert len(files_seen) > 5


def test_follow_waits_then_reads_growth(tmp_path: Path) -> None:
    write_logs(tmp_path, b"a")
    follower = LogFollower(tmp_path, "web", "stdout", follow=True)
    assert [i.data for i in follower.poll() if isinstance(i, LogChunk)] == [b"a"]
    assert follower.poll() == [] and not follower.done
    with open(tmp_path / LOGS / "web.stdout.0", "ab") as f:
        f.write(b"b")
    assert follower.poll() == [LogChunk(f"{LOGS}/web.stdout.0", 2, b"b")]


def test_truncation_is_reported_and_reading_restarts(tmp_path: Path) -> None:
    write_logs(tmp_path, b"hello world")
    follower = LogFollower(tmp_path, "web", "stdout", follow=True)
    follower.poll()
    (tmp_path / LOGS / "web.stdout.0").write_bytes(b"hi")
    assert follower.poll() == [
        FileEvent(f"{LOGS}/web.stdout.0", "file truncated"),
        LogChunk(f"{LOGS}/web.stdout.0", 2, b"hi"),
    ]


def test_deleted_file_is_read_to_its_end_then_the_next_one(tmp_path: Path) -> None:
    write_logs(tmp_path, b"first")
    follower = LogFollower(tmp_path, "web", "stdout", follow=True)
    with open(tmp_path / LOGS / "web.stdout.0", "ab") as f:
        f.write(b"-tail")
    (tmp_path / LOGS / "web.stdout.1").write_bytes(b"second")
    os.unlink(tmp_path / LOGS / "web.stdout.0")  # removed by MaxFiles before we read it
    items = follower.poll()
    assert items == [
        LogChunk(f"{LOGS}/web.stdout.0", 10, b"first-tail"),
        FileEvent(f"{LOGS}/web.stdout.0", "file deleted"),
        LogChunk(f"{LOGS}/web.stdout.1", 6, b"second"),
    ]


def _collect(follower: LogFollower, plain: bool, limit: int) -> bytes:
    async def run() -> bytes:
        body = b""
        async for part in stream_body(follower, plain=plain, poll_s=0.01):
            body += part
        return body

    return asyncio.run(asyncio.wait_for(run(), 30))[:limit]


def test_plain_body_is_raw_bytes(tmp_path: Path) -> None:
    write_logs(tmp_path, b"one\n", b"two\n")
    assert _collect(LogFollower(tmp_path, "web", "stdout"), True, 100) == b"one\ntwo\n"


def test_framed_body_is_json_frames_with_file_and_offset(tmp_path: Path) -> None:
    write_logs(tmp_path, b"one\n", b"two\n")
    body = _collect(LogFollower(tmp_path, "web", "stdout"), False, 10_000).decode()
    decoder, frames, i = json.JSONDecoder(), [], 0
    while i < len(body):
        frame, i = decoder.raw_decode(body, i)
        frames.append(frame)
    data = [f for f in frames if f]
    assert [(f["File"], f["Offset"], base64.b64decode(f["Data"])) for f in data] == [
        (f"{LOGS}/web.stdout.0", 4, b"one\n"),
        (f"{LOGS}/web.stdout.1", 4, b"two\n"),
    ]


def test_file_follower_origin_end_and_confinement(tmp_path: Path) -> None:
    (tmp_path / "alloc/data").mkdir(parents=True)
    (tmp_path / "alloc/data/state").write_bytes(b"0123456789")
    follower = FileFollower(tmp_path, "alloc/data/state", offset=4, origin="end", follow=False)
    assert drain(follower) == b"6789"
    with pytest.raises(FSError, match="Path escapes the alloc directory"):
        FileFollower(tmp_path, "../../etc/passwd")
    with pytest.raises(FSError) as info:
        FileFollower(tmp_path, "alloc/data/missing")
    assert info.value.code == 404


def test_file_follower_reports_deletion_and_ends(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    follower = FileFollower(tmp_path, "f")
    assert follower.poll() == [LogChunk("f", 3, b"abc")]
    os.unlink(tmp_path / "f")
    assert follower.poll() == [FileEvent("f", "file deleted")]
    assert follower.done


def test_tail_written_just_before_rotation_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nomad issue #11653: the writer appends to .0 and creates .1 between our EOF read
    and our look for .1; the tail of .0 must still be read before switching."""
    write_logs(tmp_path, b"a")
    follower = LogFollower(tmp_path, "web", "stdout", follow=True)
    follower.poll()
    original = follower._next_index

    def racing() -> int | None:
        if not (tmp_path / LOGS / "web.stdout.1").exists():
            with open(tmp_path / LOGS / "web.stdout.0", "ab") as f:
                f.write(b"-tail")
            (tmp_path / LOGS / "web.stdout.1").write_bytes(b"b")
        return original()

    monkeypatch.setattr(follower, "_next_index", racing)
    items = follower.poll()
    assert b"".join(i.data for i in items if isinstance(i, LogChunk)) == b"-tailb"
