"""Fork each task's native executor from one long-lived spawner process; mirrors
drivers/shared/executor (Nomad launches an executor process per task; we fork it).

Starting an executor with subprocess.Popen forks the agent, whose fd table grows by a
few fds per running task (every fork copies the table and the child closes it all:
quadratic over a thousand starts), and execs a static binary whose start-up costs more
than the rest of the executor. Instead the agent starts the executor binary once, in
spawner mode (executor.c), on first use, and sends it one message per task over an
AF_UNIX SOCK_SEQPACKET socket: NUL-separated fields (state dir, cwd, command, the task's
autogroup nice or "", argc, args, ``NAME=value`` env) plus three fds (the announce pipe,
stdout, stderr). The spawner forks; the child is the task's executor (own session, the
usual protocol). There is no reply: the task's announcement on the pipe names the
executor's PID too, and what the spawner could not do is announced there as well, so a
start waits once, on its own pipe (a reply first would cost every start a second sleep
and wake-up, and serialize the starts on the reply). The executor is then not the
agent's child: the driver watches it with a pidfd. A spawner that died (killed by
someone) is restarted on the next start; its executors and tasks never depend on it, so
tasks outlive it and the agent alike.
"""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence

#: argv[1] of the spawner; an executor's argv[1] is executor.MARK, so orphan detection
#: (driver.wrapper_state_dir) never mistakes the spawner for a task's executor.
SPAWNER_MARK = "--nomadpaas-rawexec-spawner"
#: The spawner's argv area is this much bigger than its own argv: each forked executor
#: rewrites the area to ``<exe> --nomadpaas-rawexec <state dir> <command> <args>`` (cut to
#: fit), and a state dir (< PATH_MAX) always fits whole.
PADDING_BYTES = 4096
#: The largest request (executor.c REQUEST_MAX); a larger one (a huge environment) is
#: started with Popen instead.
REQUEST_MAX_BYTES = 1 << 20
#: A send blocked this long means the spawner stopped reading: it is killed, the start fails.
SEND_TIMEOUT_S = 10.0
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()
# The peer closed: nothing was delivered, so starting a new spawner and resending is safe.
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ECONNREFUSED)


class TooLarge(Exception):
    """The request does not fit in one message; the caller starts the executor itself."""


def encode_request(
    state_dir: str,
    cwd: str,
    binary: str,
    args: Sequence[str],
    env: Mapping[str, str],
    autogroup_nice: int | None = None,
) -> bytes:
    """The request's fields, NUL-separated; ValueError as Popen raises for the same input.
    ``autogroup_nice``: the task's CPU weight (cpu_weight.py); None leaves the default."""
    # One scan of all names joined, not a loop per name (a NUL in one is caught below).
    if "=" in "\0".join(env):
        raise ValueError("illegal environment variable name")
    nice = "" if autogroup_nice is None else str(autogroup_nice)
    fields = [state_dir, cwd, binary, nice, str(len(args)), *args, *map("=".join, env.items())]
    data = "\0".join(fields).encode(_FS_ENCODING, _FS_ERRORS)
    if data.count(b"\0") != len(fields) - 1:
        raise ValueError("embedded null byte")
    return data


class Spawner:
    """The spawner process of one executor binary; ``spawn`` may be called from any thread."""

    def __init__(self, executor: str) -> None:
        self._executor = executor
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The running spawner's PID (None before the first start)."""
        return None if self._proc is None else self._proc.pid

    def spawn(
        self,
        state_dir: str,
        cwd: str,
        binary: str,
        args: Sequence[str],
        env: Mapping[str, str],
        fds: tuple[int, int, int],
        autogroup_nice: int | None = None,
    ) -> int:
        """Have an executor forked for the task; returns the PID of the spawner that took
        the request (for `replace`). The caller keeps (and closes) ``fds`` (announce pipe
        write end, stdout, stderr): the spawner got copies. The outcome is announced on
        the pipe: the task (and its executor's PID), "!<errno> <what>" for what failed,
        or EOF if the spawner died with the request.

        Raises OSError when the spawner cannot be started or takes no request, TooLarge
        when the request does not fit in a message, ValueError for a NUL or bad env name."""
        data = encode_request(state_dir, cwd, binary, args, env, autogroup_nice)
        if len(data) > REQUEST_MAX_BYTES:
            raise TooLarge
        with self._lock:
            for attempt in range(2):
                sock = self._ensure_started()
                try:
                    socket.send_fds(sock, [data], list(fds))
                except OSError as exc:
                    if exc.errno == errno.EMSGSIZE:
                        raise TooLarge from exc
                    if exc.errno in _GONE and attempt == 0:
                        self._stop()
                        continue
                    if isinstance(exc, TimeoutError):
                        self._stop()  # stuck: the next start gets a new spawner
                    raise
                assert self._proc is not None
                return self._proc.pid
        raise AssertionError("unreachable")  # pragma: no cover

    def replace(self, pid: int) -> None:
        """Stop the spawner `pid` (it took a request and announced nothing: dead or
        stuck), so that the next start gets a new one; a newer spawner is left alone."""
        with self._lock:
            if self._proc is not None and self._proc.pid == pid:
                self._stop()

    def _ensure_started(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # Big enough for the largest request (the kernel caps it at net.core.wmem_max;
            # a request above the cap gets EMSGSIZE and goes through Popen).
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, REQUEST_MAX_BYTES)
            ours.settimeout(SEND_TIMEOUT_S)
            self._proc = subprocess.Popen(
                [self._executor, SPAWNER_MARK, "x" * PADDING_BYTES],
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={},
                # Its own session, as each executor has: a ^C in the agent's terminal
                # reaches neither the spawner nor, through it, a task.
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        return ours

    def _stop(self) -> None:
        """Forget the spawner (killing it if it still runs); the next spawn starts one."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None

    def close(self) -> None:
        """Stop the spawner (the executors it forked keep running); the next ``spawn``
        starts a new one."""
        with self._lock:
            self._stop()


_SPAWNERS: dict[str, Spawner] = {}
_SPAWNERS_LOCK = threading.Lock()


def spawner_for(executor: str) -> Spawner:
    """The process's one spawner for ``executor`` (started on its first ``spawn``)."""
    with _SPAWNERS_LOCK:
        spawner = _SPAWNERS.get(executor)
        if spawner is None:
            spawner = _SPAWNERS[executor] = Spawner(executor)
        return spawner
