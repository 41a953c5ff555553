"""LogMon: FIFOs → rotated files from one thread; prompt flushes; drain on stop; resume."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from testsupport import threads_started_from

from nomadpaas.agent.client.logmon import logmon as logmon_module
from nomadpaas.agent.client.logmon.logmon import LogMon, LogmonConfig, LogMonError

WAIT_S = 20.0


def _wait(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _config(d: Path, task: str = "web", size: int = 1 << 20, max_files: int = 10) -> LogmonConfig:
    return LogmonConfig(
        log_dir=str(d),
        stdout_log_file=f"{task}.stdout",
        stderr_log_file=f"{task}.stderr",
        stdout_fifo=str(d / f".{task}.stdout.fifo"),
        stderr_fifo=str(d / f".{task}.stderr.fifo"),
        max_files=max_files,
        max_file_size_bytes=size,
    )


def _all(d: Path, base: str) -> bytes:
    files = [p for p in d.iterdir() if p.name.startswith(base + ".") and p.suffix[1:].isdigit()]
    files.sort(key=lambda p: int(p.suffix[1:]))
    return b"".join(p.read_bytes() for p in files)


@pytest.fixture
def logmon() -> Iterator[LogMon]:
    lm = LogMon()
    try:
        yield lm
    finally:
        lm.close()


def _writer(fifo: str) -> int:
    # The task side: O_RDWR, as raw_exec opens it, so writes never SIGPIPE.
    return os.open(fifo, os.O_RDWR)


def test_lines_reach_the_files_promptly_and_streams_stay_apart(
    tmp_path: Path, logmon: LogMon
) -> None:
    cfg = _config(tmp_path)
    logmon.start("web", cfg)
    out, err = _writer(cfg.stdout_fifo), _writer(cfg.stderr_fifo)
    try:
        os.write(out, b"hello\n")
        os.write(err, b"oops\n")
        _wait(lambda: _all(tmp_path, "web.stdout") == b"hello\n", "stdout line")
        _wait(lambda: _all(tmp_path, "web.stderr") == b"oops\n", "stderr line")
        os.write(out, b"no newline yet")  # flushed by the 100 ms tick
        _wait(lambda: _all(tmp_path, "web.stdout") == b"hello\nno newline yet", "partial line")
    finally:
        os.close(out)
        os.close(err)
    assert logmon.running() == ["web"]


def test_stop_drains_what_is_left_in_the_pipe(tmp_path: Path, logmon: LogMon) -> None:
    cfg = _config(tmp_path)
    logmon.start("web", cfg)
    out = _writer(cfg.stdout_fifo)
    try:
        payload = b"".join(f"{i:05d}\n".encode() for i in range(5000))  # 30 KB: fits the pipe
        os.write(out, payload)
        logmon.stop("web")
        assert _all(tmp_path, "web.stdout") == payload
        assert logmon.running() == []
    finally:
        os.close(out)
    logmon.stop("web")  # unknown now: no-op


def test_a_new_logmon_resumes_the_same_pipe_and_file(tmp_path: Path) -> None:
    cfg = _config(tmp_path, size=64, max_files=1000)
    first = LogMon()
    first.start("web", cfg)
    out = _writer(cfg.stdout_fifo)
    second: LogMon | None = None
    try:
        lines = [f"line {i:04d}\n".encode() for i in range(60)]  # 10 bytes each
        os.write(out, b"".join(lines[:20]))
        _wait(lambda: _all(tmp_path, "web.stdout") == b"".join(lines[:20]), "first batch")
        first.close()  # the agent goes away; the task keeps writing into the pipe
        os.write(out, b"".join(lines[20:40]))
        time.sleep(0.3)
        assert _all(tmp_path, "web.stdout") == b"".join(lines[:20])
        second = LogMon()
        second.start("web", cfg)
        os.write(out, b"".join(lines[40:]))
        _wait(lambda: _all(tmp_path, "web.stdout") == b"".join(lines), "everything once")
        # Stopped before the files are judged: a rotation the loop is in the middle of (the
        # next file made, the old one not yet cut back) already reads as everything once.
        second.close()
        names = sorted(int(p.suffix[1:]) for p in tmp_path.glob("web.stdout.*"))
        assert names == list(range(len(names)))
        for n in names[:-1]:
            body = (tmp_path / f"web.stdout.{n}").read_bytes()
            assert len(body) <= 64 and body.endswith(b"\n")
    finally:
        os.close(out)
        first.close()
        if second is not None:
            second.close()


def test_max_files_is_honoured_through_logmon(tmp_path: Path, logmon: LogMon) -> None:
    cfg = _config(tmp_path, size=100, max_files=3)
    logmon.start("web", cfg)
    out = _writer(cfg.stdout_fifo)
    try:
        for i in range(100):
            os.write(out, f"{i:09d}\n".encode())
        logmon.stop("web")
    finally:
        os.close(out)
    names = sorted(int(p.suffix[1:]) for p in tmp_path.glob("web.stdout.*"))
    assert len(names) == 3
    assert _all(tmp_path, "web.stdout").endswith(b"000000099\n")


def test_one_thread_serves_many_tasks_and_pipes_are_grown(tmp_path: Path, logmon: LogMon) -> None:
    writers = []
    try:
        with threads_started_from(os.path.dirname(logmon_module.__file__)) as started:
            for i in range(20):
                cfg = _config(tmp_path, task=f"t{i}")
                logmon.start(f"t{i}", cfg)
                writers.append(_writer(cfg.stdout_fifo))
                writers.append(_writer(cfg.stderr_fifo))
        assert started == []  # the fixture's one thread serves them all
        with open("/proc/sys/fs/pipe-max-size") as f:
            wanted = min(1 << 20, int(f.read()))
        if os.geteuid() == 0:
            assert fcntl.fcntl(writers[0], fcntl.F_GETPIPE_SZ) >= wanted
        for i, fd in enumerate(writers[::2]):
            os.write(fd, f"task {i}\n".encode())
        for i in range(20):
            _wait(lambda i=i: _all(tmp_path, f"t{i}.stdout") == f"task {i}\n".encode(), "fan-in")
    finally:
        for fd in writers:
            os.close(fd)


def test_start_refuses_a_non_fifo_path(tmp_path: Path, logmon: LogMon) -> None:
    cfg = _config(tmp_path)
    Path(cfg.stdout_fifo).write_text("regular file")
    with pytest.raises(LogMonError, match="is not a FIFO"):
        logmon.start("web", cfg)


def test_closed_logmon_refuses_work(tmp_path: Path) -> None:
    lm = LogMon()
    lm.close()
    with pytest.raises(LogMonError, match="closed"):
        lm.start("web", _config(tmp_path))


def test_a_request_posted_while_the_loop_drains_its_wakeups_is_not_lost(
    logmon: LogMon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wakeups are coalesced (one byte in the wake pipe while one is pending). Post a
    # request exactly while the loop empties that pipe: it must still be served, and so
    # must every later one (a lost wakeup hangs them for 10 s).
    real_read = os.read
    armed = True
    raced = threading.Event()
    served = threading.Event()

    def read(fd: int, n: int) -> bytes:
        nonlocal armed
        if armed and fd == logmon._wake_r and threading.current_thread().name == "logmon":
            armed = False
            # Not waited for (as the loop is busy right here): only queued, with a wakeup.
            racer = threading.Thread(target=logmon._post, args=(served.set,))
            racer.start()
            racer.join(WAIT_S)
            raced.set()
        return real_read(fd, n)

    monkeypatch.setattr(logmon_module.os, "read", read)
    d = tmp_path / "first"
    d.mkdir()
    logmon.start("first", _config(d, "first"))
    assert logmon.running() == ["first"]  # a request: the loop drains its wake pipe
    assert raced.wait(WAIT_S), "the loop never drained its wake pipe"
    monkeypatch.setattr(logmon_module.os, "read", real_read)
    began = time.monotonic()
    assert served.wait(2.0), "the request posted during the drain was lost"
    assert logmon.running() == ["first"]
    assert time.monotonic() - began < 2.0


def test_starts_from_many_threads_are_all_watched_without_waking_the_loop(
    tmp_path: Path, logmon: LogMon, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A start registers its FIFOs itself: it posts nothing to the loop (a start storm must
    # not wake it once per task), and racing starts lose none of each other's streams.
    posted: list[object] = []
    real_post = logmon._post
    monkeypatch.setattr(logmon, "_post", lambda fn: (posted.append(fn), real_post(fn)))
    tasks = [f"t{i}" for i in range(40)]
    for task in tasks:
        (tmp_path / task).mkdir()

    def start(names: list[str]) -> None:
        for name in names:
            logmon.start(name, _config(tmp_path / name, name))

    threads = [threading.Thread(target=start, args=(tasks[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert posted == []
    assert sorted(logmon.running()) == sorted(tasks)
    # Every one is copied, though the loop was never told about them.
    fds = [_writer(_config(tmp_path / name, name).stdout_fifo) for name in tasks]
    try:
        for fd, name in zip(fds, tasks, strict=True):
            os.write(fd, f"{name}\n".encode())
        for name in tasks:
            _wait(
                lambda n=name: _all(tmp_path / n, f"{n}.stdout") == f"{n}\n".encode(),  # type: ignore[misc]
                f"{name}'s line",
            )
    finally:
        for fd in fds:
            os.close(fd)
