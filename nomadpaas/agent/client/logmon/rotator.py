"""Writes one log stream into size-rotated files; mirrors client/logmon/logging/rotator.go.

Files are ``<dir>/<base>.<n>`` (``web.stdout.0``, ``.1`` …); the highest ``n`` is the active file.
A file rotates when it reaches ``file_size_bytes``; files beyond ``max_files`` are deleted oldest
first. Complete lines are written at once; a rotation cuts at the last newline that fits, so lines
are only split when one line is longer than a whole file. A trailing partial line waits in the
buffer until its newline arrives or ``flush()`` (logmon calls it after 100 ms) writes it anyway.
On open, writing resumes in the highest existing file: restarts append, never truncate.

Logmon uses ``splice_from`` instead of ``write``: the kernel moves bytes from the task's pipe
straight into the active file, so a byte leaves the pipe only by landing in a file and an agent
killed at any instant loses nothing (a ``read()`` + ``write()`` pair loses the chunk in between).
Rotation then looks at what landed: the bytes after the last newline that fits move to the next
file, written there before the old file is cut, so a crash in between duplicates, never loses.
"""

from __future__ import annotations

import os
import re

# A partial line is written out once it is this long even without a newline (memory bound).
MAX_PENDING_BYTES = 64 * 1024
FILE_PERMS = 0o644


class FileRotator:
    def __init__(
        self,
        log_dir: str,
        base_name: str,
        max_files: int,
        file_size_bytes: int,
        *,
        fresh: bool = False,
    ) -> None:
        """``fresh``: the caller expects no file of this stream to exist yet (nothing to
        list): the first file is created exclusively, and only if one exists after all
        are the files listed as for a restart."""
        if max_files < 1 or file_size_bytes < 1:
            raise ValueError("max_files and file_size_bytes must be positive")
        self.log_dir = log_dir
        self.base_name = base_name
        self.max_files = max_files
        self.file_size_bytes = file_size_bytes
        self._pending = bytearray()
        if fresh:
            try:
                self._fd = self._open(0, exclusive=True)
            except FileExistsError:
                pass
            else:
                # A new, empty file: no listing, no fstat (two syscalls of every task start).
                self._index, self._size = 0, 0
                return
        existing = self._indexes()
        self._index = existing[-1] if existing else 0
        self._fd = self._open(self._index)
        self._size = os.fstat(self._fd).st_size
        if existing and existing[0] < self._index - max_files + 1:
            self._purge()  # a restart found more files than it keeps (listing them again)

    @property
    def index(self) -> int:
        """The number of the active file."""
        return self._index

    def path(self, index: int) -> str:
        return os.path.join(self.log_dir, f"{self.base_name}.{index}")

    def write(self, data: bytes) -> None:
        """Take bytes from the stream; complete lines go to disk now, a partial one waits."""
        self._pending += data
        cut = self._pending.rfind(b"\n") + 1
        if len(self._pending) - cut >= MAX_PENDING_BYTES:
            cut = len(self._pending)
        if cut:
            self._write_out(bytes(self._pending[:cut]))
            del self._pending[:cut]

    def splice_from(self, fd: int, max_bytes: int) -> int:
        """Move up to ``max_bytes`` from pipe ``fd`` into the active file; returns the count."""
        self.flush()  # keep byte order with anything given to write()
        if self._size >= self.file_size_bytes and self._last_byte() == b"\n":
            self._rotate()
        n = os.splice(fd, self._fd, max_bytes, offset_dst=self._size)
        self._size += n
        while self._size > self.file_size_bytes:
            self._spill()
        return n

    def _last_byte(self) -> bytes:
        return os.pread(self._fd, 1, self._size - 1) if self._size else b""

    def _spill(self) -> None:
        """Move the bytes past the last newline that fits into a new active file."""
        limit = self.file_size_bytes
        start = max(0, limit - MAX_PENDING_BYTES)
        newline = os.pread(self._fd, limit - start, start).rfind(b"\n")
        cut = start + newline + 1 if newline >= 0 else limit  # no newline: split the line
        overflow = os.pread(self._fd, self._size - cut, cut)
        old_fd = self._fd
        self._index += 1
        self._fd = self._open(self._index)
        self._size = os.fstat(self._fd).st_size
        self._write_all(memoryview(overflow))
        os.ftruncate(old_fd, cut)
        os.close(old_fd)
        self._purge()

    def has_pending(self) -> bool:
        return bool(self._pending)

    def flush(self) -> None:
        """Write everything buffered, including a partial last line."""
        if self._pending:
            self._write_out(bytes(self._pending))
            self._pending.clear()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1

    def _write_out(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            room = self.file_size_bytes - self._size
            if room <= 0:
                self._rotate()
                continue
            if len(view) <= room:
                self._write_all(view)
                return
            newline = data.rfind(b"\n", len(data) - len(view), len(data) - len(view) + room)
            if newline >= 0:
                end = newline + 1 - (len(data) - len(view))
                self._write_all(view[:end])
                view = view[end:]
            elif self._size > 0:
                pass  # start the long line in a fresh file rather than split it
            else:
                self._write_all(view[:room])  # one line longer than a file: must split
                view = view[room:]
            self._rotate()

    def _write_all(self, view: memoryview) -> None:
        while view:
            n = os.pwrite(self._fd, view, self._size)
            self._size += n
            view = view[n:]

    def _rotate(self) -> None:
        os.close(self._fd)
        self._index += 1
        self._fd = self._open(self._index)
        self._size = os.fstat(self._fd).st_size
        self._purge()

    def _open(self, index: int, *, exclusive: bool = False) -> int:
        # Read-write, not O_APPEND: splice(2) refuses append-mode targets, and rotation reads
        # back what landed. This rotator is the file's only writer, so offsets are its own.
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        if exclusive:
            flags |= os.O_EXCL
        return os.open(self.path(index), flags, FILE_PERMS)

    def _indexes(self) -> list[int]:
        pattern = re.compile(re.escape(self.base_name) + r"\.(\d+)")  # re caches it
        found = []
        for name in os.listdir(self.log_dir):
            match = pattern.fullmatch(name)
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    def _purge(self) -> None:
        oldest_kept = self._index - self.max_files + 1
        for index in self._indexes():
            if index < oldest_kept:
                try:
                    os.unlink(self.path(index))
                except FileNotFoundError:
                    pass
