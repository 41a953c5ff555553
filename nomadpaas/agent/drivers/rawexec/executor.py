"""The native per-task executor (executor.c): built once per machine, else None; mirrors
drivers/shared/executor (Nomad ships its executor in the nomad binary; we ship its source).

`executor_path()` returns the path of a compiled executor, building it with the host's C
compiler into the user's cache dir on first use (`$XDG_CACHE_HOME/nomadpaas`, else
`~/.cache/nomadpaas`), named by a digest of the source, the flags and the machine, so an
edited source or another architecture gets a new binary and old ones are never trusted.
A static link is tried first (no dynamic loader at each task start), then a dynamic one.
Without a compiler, or when the build fails, it returns None and the driver runs tasks
under the POSIX sh wrapper (handle.py), which keeps the same protocol: nothing else
changes. The answer is computed once per process.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile

log = logging.getLogger(__name__)

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "executor.c")
#: argv[1] of every executor process: how `kill_orphaned_tasks` recognises one.
MARK = "--nomadpaas-rawexec"
NAME_PREFIX = "rawexec-executor-"
_FLAG_SETS = (("-O2", "-static"), ("-O2",))
#: A compile that takes longer than this is abandoned (the sh wrapper is used).
COMPILE_TIMEOUT_S = 60.0


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nomadpaas")


@functools.cache
def executor_path() -> str | None:
    """The compiled executor's path, building it if needed; None when it cannot be built."""
    try:
        with open(SOURCE, "rb") as f:
            source = f.read()
    except OSError:
        return None
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    directory = cache_dir()
    for flags in _FLAG_SETS:
        digest = hashlib.sha256(
            b"\0".join([source, " ".join(flags).encode(), platform.machine().encode()])
        ).hexdigest()[:16]
        path = os.path.join(directory, NAME_PREFIX + digest)
        if _usable(path) or _build(compiler, flags, path):
            return path
    return None


def _usable(path: str) -> bool:
    """Ours to run: a regular executable file owned by this user, writable by no one else."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022 and os.access(path, os.X_OK)


def _build(compiler: str, flags: tuple[str, ...], path: str) -> bool:
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".build-", dir=directory)
        os.close(fd)
    except OSError as exc:
        log.info("raw_exec executor: cannot write %s (%s); using the sh wrapper", directory, exc)
        return False
    try:
        result = subprocess.run(
            [compiler, *flags, "-o", tmp, SOURCE],
            capture_output=True,
            timeout=COMPILE_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            log.info("raw_exec executor: %s %s failed: %s", compiler, " ".join(flags),
                     result.stderr.decode(errors="replace").strip()[-500:])  # fmt: skip
            return False
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)  # atomic: a concurrent builder's identical binary is as good
        return True
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("raw_exec executor: build failed (%s); using the sh wrapper", exc)
        return False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
