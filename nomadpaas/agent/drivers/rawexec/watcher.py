"""One thread tells every waiter when its task's processes exit; the event loop of
drivers/rawexec (Nomad's executor waits per task in Go; here pidfds share one epoll).

A thread per task blocked in poll(2) costs a wakeup every interval and a stack each; with a
thousand tasks that is the agent's biggest idle cost. `ExitWatcher.watch(fds, callback)` calls
`callback` once, from the watcher thread, as soon as any of the pidfds becomes readable (its
process exited). Callbacks must be quick and must not block: they only wake someone.

A callback may fire for a process that has not exited yet (an fd number closed and reused by
another watch): callers re-check and watch again. `cancel` forgets a watch before its fds close.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable

log = logging.getLogger("nomadpaas.agent.drivers.rawexec")

_EPOLL_MAX_EVENTS = 256


class Watch:
    __slots__ = ("callback", "fds")

    def __init__(self, fds: tuple[int, ...], callback: Callable[[], None]) -> None:
        self.fds = fds
        self.callback = callback


class ExitWatcher:
    """epoll over pidfds on one daemon thread, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_fd: dict[int, Watch] = {}
        self._epoll: select.epoll | None = None
        self._thread: threading.Thread | None = None

    def watch(self, fds: tuple[int, ...], callback: Callable[[], None]) -> Watch:
        """Call `callback` once when one of `fds` (pidfds) is readable; returns a token for
        `cancel`. The fds must stay open until the callback ran or the watch was cancelled."""
        w = Watch(fds, callback)
        stale: list[Watch] = []
        with self._lock:
            epoll = self._ensure_started()
            for fd in fds:
                old = self._by_fd.get(fd)
                if old is not None:
                    # One watch per fd: the older one is told now (it re-checks and may
                    # watch again); its other fds go with it.
                    self._drop(old)
                    stale.append(old)
            try:
                for fd in fds:
                    self._by_fd[fd] = w
                    epoll.register(fd, select.EPOLLIN | select.EPOLLONESHOT)
            except OSError:
                self._drop(w)  # an fd closed meanwhile: its process is being released
                stale.append(w)
        for old in stale:
            old.callback()
        return w

    def cancel(self, w: Watch) -> None:
        with self._lock:
            if any(self._by_fd.get(fd) is w for fd in w.fds):
                self._drop(w)

    def _drop(self, w: Watch) -> None:
        """Unregister every fd of `w` (lock held)."""
        assert self._epoll is not None
        for fd in w.fds:
            if self._by_fd.get(fd) is w:
                del self._by_fd[fd]
            try:
                self._epoll.unregister(fd)
            except (FileNotFoundError, OSError):
                pass

    def _ensure_started(self) -> select.epoll:
        if self._epoll is None:
            self._epoll = select.epoll()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="rawexec-exits", daemon=True)
            self._thread.start()
        return self._epoll

    def _run(self) -> None:
        epoll = self._epoll
        assert epoll is not None
        while True:
            try:
                events = epoll.poll(-1, _EPOLL_MAX_EVENTS)
            except InterruptedError:
                continue
            except (OSError, ValueError):
                return  # closed
            fired: list[Watch] = []
            with self._lock:
                for fd, _ in events:
                    w = self._by_fd.get(fd)
                    if w is None:
                        continue
                    self._drop(w)
                    fired.append(w)
            for w in fired:
                try:
                    w.callback()
                except Exception:
                    log.exception("exit watcher: callback failed")
