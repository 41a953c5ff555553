"""Copies every task's stdout/stderr FIFOs into rotated log files; mirrors client/logmon/logmon.go.

Nomad runs one logmon process per task. Here one ``LogMon`` per agent serves all tasks from a single
thread: an epoll selector over every FIFO, a wakeup pipe for stop requests, and a 100 ms tick that
flushes partial lines so ``logs -f`` sees output promptly. No thread or process per task. A start
adds its FIFOs to the selector from the caller's thread (epoll takes them while the loop waits):
a start storm does not wake the loop once per task.

FIFOs are opened ``O_RDWR | O_NONBLOCK``: reads never see EOF when a task restarts, and the pipe
(with its buffered bytes) lives as long as anyone holds it. While the agent is down the task side
(the raw_exec wrapper) keeps it alive, so output waits in the pipe, and a new ``LogMon`` that
``start``s the same task after an agent restart continues where the old one stopped, appending to
the highest rotated file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import selectors
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from nomadpaas.agent.client.logmon.rotator import FileRotator

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_MAX_FILES = 10
DEFAULT_MAX_FILE_SIZE_BYTES = 10 * MIB
# Nomad's rotator flushes every 100 ms; so do we for partial lines.
FLUSH_INTERVAL_S = 0.1
# Bigger pipes hold more output while the agent is down; capped by /proc/sys/fs/pipe-max-size.
WANTED_PIPE_SIZE_BYTES = 1 * MIB
READ_CHUNK_BYTES = 64 * 1024
# Per FIFO per loop turn, so one chatty task cannot starve the others.
MAX_CHUNKS_PER_TURN = 16
# stop() drains what is left in the pipe, but a task child still writing must not hold it forever.
MAX_DRAIN_BYTES = 64 * MIB
STOP_TIMEOUT_S = 10.0


class LogMonError(Exception):
    """A log FIFO or log file could not be set up."""


@dataclass(frozen=True)
class LogmonConfig:
    """One task's logging setup (Nomad: ``logmon.LogConfig``)."""

    log_dir: str
    stdout_log_file: str  # base name, e.g. "web.stdout"
    stderr_log_file: str
    stdout_fifo: str
    stderr_fifo: str
    max_files: int = DEFAULT_MAX_FILES
    max_file_size_bytes: int = DEFAULT_MAX_FILE_SIZE_BYTES


class _Stream:
    def __init__(self, key: str, fd: int, rotator: FileRotator) -> None:
        self.key = key
        self.fd = fd
        self.rotator = rotator
        self.last_write = time.monotonic()


def _read_pipe_max_size() -> int:
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            return int(f.read())
    except OSError:
        return 64 * 1024


def _pipe_budget_bytes() -> int | None:
    """Unprivileged users past fs.pipe-user-pages-soft get 8 KiB pipes, so stay within half."""
    if os.geteuid() == 0:
        return None
    try:
        with open("/proc/sys/fs/pipe-user-pages-soft") as f:
            pages = int(f.read())
    except OSError:
        return 0
    return None if pages == 0 else pages * os.sysconf("SC_PAGE_SIZE") // 2


class LogMon:
    """All tasks' log capture. ``start``/``stop`` per task; ``close`` on agent shutdown."""

    def __init__(self, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        self._flush_interval_s = flush_interval_s
        self._selector = selectors.DefaultSelector()
        # Which tasks are watched: added by start() (any thread), removed by the loop thread;
        # `_lock` makes each change and its selector (un)registration one step.
        self._streams: dict[str, list[_Stream]] = {}
        self._lock = threading.Lock()
        # Streams holding a partial line: only these are visited by the 100 ms flush, so an idle
        # or line-oriented majority of a thousand tasks costs nothing per loop turn.
        self._partial: set[_Stream] = set()
        self._requests: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._pipe_size = min(WANTED_PIPE_SIZE_BYTES, _read_pipe_max_size())
        self._pipe_budget = _pipe_budget_bytes()
        self._closing = False
        self._wake_pending = False  # a wakeup byte is in the pipe, unread
        self._thread = threading.Thread(target=self._run, name="logmon", daemon=True)
        self._thread.start()

    # -- public API (any thread) ---------------------------------------------------------------

    def start(self, key: str, cfg: LogmonConfig) -> None:
        """Create the FIFOs if needed and start copying them; a no-op if ``key`` is running."""
        if self._closing or not self._thread.is_alive():
            raise LogMonError("logmon is closed")
        streams = [self._open_stream(key, cfg.stdout_fifo, cfg, cfg.stdout_log_file)]
        try:
            streams.append(self._open_stream(key, cfg.stderr_fifo, cfg, cfg.stderr_log_file))
        except BaseException:
            streams[0].rotator.close()
            os.close(streams[0].fd)
            raise

        # Registered here, not by the loop: the selector's epoll reports the FIFOs from its
        # next wait on (what the task wrote meanwhile waits in them), and a later stop() or
        # running(), served by the loop, sees them.
        with self._lock:
            if self._closing:
                self._discard(streams)
                raise LogMonError("logmon is closed")
            if key in self._streams:
                self._discard(streams)
                return
            try:
                for s in streams:
                    self._selector.register(s.fd, selectors.EVENT_READ, s)
            except (OSError, ValueError) as exc:  # ENOSPC: out of epoll watches
                log.error("logmon: cannot watch %s: %s", key, exc)
                for s in streams:
                    with contextlib.suppress(KeyError, ValueError, OSError):
                        self._selector.unregister(s.fd)
                self._discard(streams)
                return
            self._streams[key] = streams

    @staticmethod
    def _discard(streams: list[_Stream]) -> None:
        for s in streams:
            s.rotator.close()
            os.close(s.fd)

    def stop(self, key: str) -> None:
        """Copy what is left in the task's pipes, flush and close its files; no-op if unknown."""
        self._call(lambda: self._remove(key, drain=True))

    def running(self) -> list[str]:
        result: list[list[str]] = []
        self._call(lambda: result.append(list(self._streams)))
        return result[0]

    def close(self) -> None:
        """Agent shutdown: flush and close everything, leave the FIFOs (tasks keep writing)."""
        if self._closing:
            return

        def shutdown() -> None:
            with self._lock:
                self._closing = True  # no start() registers after this
            for key in list(self._streams):
                self._remove(key, drain=False)

        self._call(shutdown)
        self._thread.join(STOP_TIMEOUT_S)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- setup ---------------------------------------------------------------------------------

    def _open_stream(self, key: str, fifo: str, cfg: LogmonConfig, base: str) -> _Stream:
        # A new FIFO is this task's first logmon in this alloc dir (the FIFOs go only with
        # the dir): its pipe has the default size and there are no log files to find.
        fresh = True
        try:
            os.mkfifo(fifo, 0o600)
        except FileExistsError:
            if not stat.S_ISFIFO(os.lstat(fifo).st_mode):
                raise LogMonError(f"{fifo} exists and is not a FIFO") from None
            fresh = False
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        self._grow_pipe(fd, fresh)
        try:
            rotator = FileRotator(
                cfg.log_dir, base, cfg.max_files, cfg.max_file_size_bytes, fresh=fresh
            )
        except OSError as exc:
            os.close(fd)
            raise LogMonError(f"failed to open log file for {base}: {exc}") from exc
        return _Stream(key, fd, rotator)

    def _grow_pipe(self, fd: int, fresh: bool) -> None:
        if not fresh and fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) >= self._pipe_size:
            return  # a live pipe from before an agent restart
        if self._pipe_budget is not None:
            if self._pipe_budget < self._pipe_size:
                return
            self._pipe_budget -= self._pipe_size
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, self._pipe_size)
        except OSError:
            pass  # EPERM/EBUSY: keep the default 64 KiB; only the offline buffer is smaller

    # -- loop thread ---------------------------------------------------------------------------

    def _post(self, fn: Callable[[], None]) -> None:
        """Queue ``fn`` for the loop thread; wake it unless a wakeup is pending already."""
        self._requests.put(fn)
        if not self._wake_pending:
            self._wake_pending = True
            os.write(self._wake_w, b"x")

    def _call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop thread and wait for it (the selector is not thread-safe)."""
        if not self._thread.is_alive():
            raise LogMonError("logmon is closed")
        done = threading.Event()
        error: list[BaseException] = []

        def wrapped() -> None:
            try:
                fn()
            except BaseException as exc:
                error.append(exc)
            finally:
                done.set()

        self._post(wrapped)
        if not done.wait(STOP_TIMEOUT_S):
            raise LogMonError("logmon did not answer")
        if error:
            raise error[0]

    def _run(self) -> None:
        while not self._closing:
            for sel_key, _ in self._selector.select(self._flush_interval_s):
                stream = sel_key.data
                if stream is None:
                    self._serve_requests()
                else:
                    self._copy(stream, MAX_CHUNKS_PER_TURN * READ_CHUNK_BYTES)
            self._flush_stale()

    def _serve_requests(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        # Cleared after the pipe is emptied and before the queue is: a request that saw
        # the flag still set was queued before this point, so the drain below serves it.
        self._wake_pending = False
        while True:
            try:
                fn = self._requests.get_nowait()
            except queue.Empty:
                return
            fn()

    def _copy(self, stream: _Stream, limit: int) -> None:
        """Move up to ``limit`` bytes from the FIFO to the rotator.

        A failing disk must not stop the loop for every task: the chunk is dropped and logged
        (the task is never blocked by its logs). A FIFO that cannot be read is dropped.
        """
        copied = 0
        while copied < limit:
            try:
                # splice: the kernel moves the bytes into the log file, so an agent killed
                # mid-copy loses nothing (see rotator.py).
                n = stream.rotator.splice_from(stream.fd, READ_CHUNK_BYTES)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError as exc:
                if not self._copy_by_read(stream, exc):
                    return
                n = 1
            if not n:
                return
            stream.last_write = time.monotonic()
            copied += n

    def _copy_by_read(self, stream: _Stream, splice_error: OSError) -> bool:
        """Fallback when splice fails (a full disk, say): read one chunk and write it.

        Returns False when the stream is done for (dropped) or empty.
        """
        try:
            data = os.read(stream.fd, READ_CHUNK_BYTES)
        except BlockingIOError:
            return False
        except OSError as exc:
            log.error("logmon: reading %s failed, dropping it: %s", stream.key, exc)
            self._remove(stream.key, drain=False)
            return False
        if not data:
            return False
        try:
            stream.rotator.write(data)
        except OSError as exc:
            log.error("logmon: writing %s logs failed, %d bytes lost: %s (splice: %s)",
                      stream.key, len(data), exc, splice_error)  # fmt: skip
        if stream.rotator.has_pending():
            self._partial.add(stream)
        return True

    def _flush_stale(self) -> None:
        now = time.monotonic()
        for s in list(self._partial):
            if not s.rotator.has_pending():
                self._partial.discard(s)
            elif now - s.last_write >= self._flush_interval_s:
                self._partial.discard(s)
                try:
                    s.rotator.flush()
                except OSError as exc:
                    log.error("logmon: flushing %s logs failed: %s", s.key, exc)

    def _remove(self, key: str, *, drain: bool) -> None:
        with self._lock:
            streams = self._streams.pop(key, None)
            for s in streams or []:
                self._selector.unregister(s.fd)
        for s in streams or []:
            self._partial.discard(s)
            if drain:
                self._copy(s, MAX_DRAIN_BYTES)
            try:
                s.rotator.close()
            except OSError as exc:
                log.error("logmon: closing %s logs failed: %s", key, exc)
            os.close(s.fd)
