"""Wakes file followers the moment a watched directory changes (Linux inotify); the
event-driven counterpart of the polling file watcher behind client/fs_endpoint.go.

Nomad's followers poll the file for growth. Here one inotify descriptor per event loop
watches every directory someone follows (logmon's `alloc/logs`, or a followed file's
directory); its readiness callback sets the `Subscription`s whose name prefix matches the
changed entry, so a followed line goes out within a loop turn of logmon writing it,
instead of up to one poll interval later. Followers keep polling as a backstop (a kernel
that does not report `splice` writes, a full inotify queue): the watch only shortens
waits, it is never needed for correctness. Where inotify is missing (not Linux, or the
per-user instance/watch limits are reached) `subscribe` returns None and followers poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import struct

__all__ = ["Subscription", "subscribe"]

# <sys/inotify.h> event bits: content written (also truncation), entries created,
# deleted or renamed in the directory, the directory itself gone, queue overflowed.
IN_MODIFY = 0x00000002
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
WATCH_MASK = IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
#: inotify_init1 flags (same values as O_NONBLOCK / O_CLOEXEC on Linux).
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (then `len` name bytes)
#: Bytes read per readiness callback; the kernel never splits an event across reads.
_READ_BYTES = 64 * 1024


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


_libc = _load_libc()


class Subscription:
    """Interest in changes to entries of one directory whose names start with a prefix.

    Usage (no change is lost: `clear` comes before the read it guards)::

        sub.clear()
        items = read_everything_new()
        if not items:
            await sub.wait(backstop_s)  # returns early when an entry changes
    """

    def __init__(self, watcher: _Watcher, wd: int, prefix: str) -> None:
        self._watcher = watcher
        self.wd = wd
        self.prefix = prefix.encode()
        self._event = asyncio.Event()
        self.closed = False

    def clear(self) -> None:
        self._event.clear()

    def notify(self) -> None:
        self._event.set()

    @property
    def changed(self) -> bool:
        """A change arrived since the last `clear`."""
        return self._event.is_set()

    async def wait(self, timeout_s: float) -> bool:
        """Until a change arrives (True) or `timeout_s` passes (False)."""
        if self._event.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout_s)
        return self._event.is_set()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._watcher.unsubscribe(self)


class _Watcher:
    """One inotify descriptor on one event loop, shared by every subscription on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.loop = loop
        self.fd = fd
        self.subs: dict[int, set[Subscription]] = {}
        loop.add_reader(fd, self._readable)

    def subscribe(self, directory: str, prefix: str) -> Subscription | None:
        assert _libc is not None
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(directory), WATCH_MASK)
        if wd < 0:  # missing directory, or the per-user watch limit reached
            return None
        sub = Subscription(self, wd, prefix)
        self.subs.setdefault(wd, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self.subs.get(sub.wd)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.subs[sub.wd]
                assert _libc is not None
                _libc.inotify_rm_watch(self.fd, sub.wd)  # fails harmlessly if already gone
        if not self.subs:
            self.close()

    def close(self) -> None:
        if _watchers.get(self.loop) is self:
            del _watchers[self.loop]
        with contextlib.suppress(Exception):  # the loop may already be closed
            self.loop.remove_reader(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, _READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._wake_all()
            return
        pos = 0
        while pos + _EVENT_HEADER.size <= len(data):
            wd, mask, _cookie, size = _EVENT_HEADER.unpack_from(data, pos)
            name = data[pos + _EVENT_HEADER.size : pos + _EVENT_HEADER.size + size].rstrip(b"\0")
            pos += _EVENT_HEADER.size + size
            if mask & IN_Q_OVERFLOW:
                self._wake_all()
                continue
            for sub in list(self.subs.get(wd, ())):
                # An event on the directory itself (no name), or its end, wakes everyone.
                if not name or mask & (IN_IGNORED | IN_DELETE_SELF) or name.startswith(sub.prefix):
                    sub.notify()

    def _wake_all(self) -> None:
        for subs in self.subs.values():
            for sub in subs:
                sub.notify()


_watchers: dict[asyncio.AbstractEventLoop, _Watcher] = {}


def subscribe(directory: str | os.PathLike[str], prefix: str = "") -> Subscription | None:
    """Watch `directory` for changes to entries named `prefix…` on the running loop.

    None when inotify cannot be used here; callers then simply poll. Close the
    subscription when done (the descriptor goes when its last subscription does).
    """
    if _libc is None:
        return None
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(loop)
    if watcher is None:
        fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:  # not Linux-like, or the per-user instance limit reached
            return None
        watcher = _watchers[loop] = _Watcher(loop, fd)
    sub = watcher.subscribe(os.fspath(directory), prefix)
    if sub is None and not watcher.subs:
        watcher.close()
    return sub
