"""Start buildpack scripts with `os.posix_spawn`: what `subprocess.Popen` did for them.

The build task is a fresh process per push, and `subprocess` costs ~4 ms of its start
(signal's enums, selectors, locale, fcntl…) for the few calls the buildpacks need. A
`Child` is such a call, with Popen's semantics as buildpacks.py used them:

- stdin is ``/dev/null`` (read-write, as Popen's DEVNULL); stdout is a pipe to this
  process; stderr goes to the same pipe (``stderr="stdout"``) or to ``/dev/null``;
- the child runs in a new session (``start_new_session=True``: `kill_group` kills its
  whole tree), with exactly `env`, SIGPIPE and SIGXFSZ back to their defaults (Python
  ignores them; ``restore_signals=True``) and no descriptor of this process beyond its
  stdio (``close_fds=True``: Python's own are close-on-exec, and the inheritable ones
  this process was given are closed in the child). One difference: glibc's posix_spawn
  leaves its two internal signals ignored in the child (32 and 33, SIGCANCEL and
  SIGSETXID: glibc's own, not for programs), as subprocess's posix_spawn path does too;
- a name without a slash is looked up in `env`'s PATH (else ``os.defpath``), trying each
  directory as Popen's child does; a script that cannot be executed (missing, not
  executable, no shebang: ``ENOEXEC``) raises that OSError here, naming ``argv[0]``;
- `communicate` reads stdout to its end and reaps the child, within a timeout that
  keeps what was read for the next call; its text is decoded as Popen's ``text=True``
  decodes (the locale's encoding, strict, universal newlines).
"""

from __future__ import annotations

import errno
import os
import select
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Mapping
    from locale import getencoding
    from typing import BinaryIO, Literal
else:  # the C modules: `signal` builds its enums at import, `locale` imports re and more
    import _signal
    from _locale import getencoding

__all__ = ["Child", "decode_text", "kill_group", "spawn"]

#: Bytes read from the pipe at a time by `communicate` (as Popen's).
_READ_BYTES = 32768
#: Signals Python ignores that a child gets back at their defaults.
_RESTORED_SIGNALS = (_signal.SIGPIPE, _signal.SIGXFSZ)
_NOT_THERE = (errno.ENOENT, errno.ENOTDIR)


class Child:
    """A started process: `pid`, `stdout` (the pipe's reading end, a buffered binary
    file) and, once reaped, `returncode` (negative: killed by that signal)."""

    def __init__(self, pid: int, stdout: BinaryIO) -> None:
        self.pid = pid
        self.stdout = stdout
        self.returncode: int | None = None
        self._output: list[bytes] = []

    def poll(self) -> int | None:
        """The exit code if the child has ended (reaping it), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): as Popen says
                self.returncode = 0
            else:
                if pid == self.pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        """Wait for the child to end; its exit code."""
        if self.returncode is None:
            try:
                _pid, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                self.returncode = 0
            else:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def communicate(self, timeout_s: float | None = None) -> bytes | None:
        """Read stdout to its end, then wait for the child; all it wrote. None when
        `timeout_s` passed first (what was read is kept: call again to go on)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if not self.stdout.closed:
            fd = self.stdout.fileno()
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while True:
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left < 0:
                        return None
                    ready = poller.poll(left * 1000)
                    if time.monotonic() > deadline:
                        return None
                    if not ready:
                        continue
                data = os.read(fd, _READ_BYTES)
                if not data:
                    break
                self._output.append(data)
            self.stdout.close()
        if deadline is None:
            self.wait()
        elif not self._wait_until(deadline):
            return None
        return b"".join(self._output)

    def _wait_until(self, deadline: float) -> bool:
        """Wait for the child's end until `deadline` (as Popen.wait with a timeout:
        polling, 1 ms growing to 50 ms); whether it ended."""
        delay = 0.0005
        while self.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            delay = min(delay * 2, left, 0.05)
            time.sleep(delay)
        return True

    def __enter__(self) -> Child:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Close stdout and reap the child (as Popen's: not after a ^C)."""
        self.stdout.close()
        if exc_type is not KeyboardInterrupt:
            self.wait()


def spawn(
    argv: list[str], env: Mapping[str, str], *, stderr: Literal["stdout", "devnull"]
) -> Child:
    """Start `argv` as described above; raise OSError when it cannot be executed."""
    read_end, write_end = os.pipe()  # both close-on-exec: only the dup2'd copy is inherited
    try:
        # dup2 first: should the pipe be fd 0-2 (this process's stdio closed), opening
        # /dev/null onto those cannot close it before it is copied.
        actions: list[tuple[int | str, ...]] = [
            (os.POSIX_SPAWN_DUP2, write_end, 1),
        ]
        if stderr == "stdout":
            actions.append((os.POSIX_SPAWN_DUP2, write_end, 2))
        actions.append((os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0))
        if stderr == "devnull":
            actions.append((os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_RDWR, 0))
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()]
        pid = _spawn_on_path(argv, env, actions)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return Child(pid, open(read_end, "rb"))  # the Child closes it


def _spawn_on_path(
    argv: list[str], env: Mapping[str, str], actions: list[tuple[int | str, ...]]
) -> int:
    """posix_spawn `argv[0]`, looked up on `env`'s PATH without a slash; the pid."""
    name = argv[0]
    if "/" in name:
        candidates = [name]
    else:
        # os.get_exec_path(env), without the `warnings` it imports for bytes keys
        path = env.get("PATH")
        dirs = (os.defpath if path is None else path).split(os.pathsep)
        candidates = [os.path.join(d, name) for d in dirs]
    saved: int | None = None
    last = errno.ENOENT
    for path in candidates:
        try:
            if len(candidates) > 1:
                os.stat(path)  # no spawn (a clone) for a directory without it
            return os.posix_spawn(
                path, argv, env, file_actions=actions, setsid=True, setsigdef=_RESTORED_SIGNALS
            )
        except OSError as exc:
            if exc.errno is None:
                raise
            last = exc.errno
            if saved is None and last not in _NOT_THERE:
                saved = last  # Popen's child reports the first such error, else the last
    code = saved if saved is not None else last
    raise OSError(code, os.strerror(code), name)


def _inheritable_fds() -> list[int]:
    """This process's descriptors above stdio that a child would inherit."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:  # not Linux: Python's own descriptors are close-on-exec anyway
        return []
    found = []
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:  # the listing's own descriptor, closed by now
                continue
    return found


def decode_text(data: bytes) -> str:
    """`data` as Popen's ``text=True`` gives it: the locale's encoding (strict), with
    ``\\r\\n`` and ``\\r`` made ``\\n``."""
    return data.decode(getencoding()).replace("\r\n", "\n").replace("\r", "\n")


def kill_group(pid: int) -> None:
    """SIGKILL the session `pid` leads (its whole tree); gone already is fine."""
    try:
        os.killpg(pid, _signal.SIGKILL)
    except ProcessLookupError:
        pass
