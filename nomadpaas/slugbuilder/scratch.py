"""Private temporary files and directories for the build task, without `tempfile`.

`tempfile` imports `random` (and with it math, bisect and a seeding from the OS) and
`weakref`, milliseconds of every build task's start for two calls. The names here come
from `os.urandom` and are created with ``O_EXCL`` / `mkdir`, mode 0600 / 0700, like
`tempfile.mkstemp` and `tempfile.mkdtemp`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["mkdtemp", "mkstemp", "remove_tree", "scratch_dir"]

#: Names tried before giving up (a clash needs 48 random bits to repeat).
ATTEMPTS = 100


def _default_dir() -> str:
    return os.environ.get("TMPDIR") or "/tmp"


def mkstemp(prefix: str, dir: str | os.PathLike[str]) -> tuple[int, str]:
    """A new file ``<dir>/<prefix><random>``, open for writing: (fd, path)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(ATTEMPTS):
        path = os.path.join(dir, prefix + os.urandom(6).hex())
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name under {os.fspath(dir)}")


def mkdtemp(prefix: str, dir: str | os.PathLike[str] | None = None) -> str:
    """A new directory ``<dir>/<prefix><random>`` (mode 0700); its absolute path."""
    parent = os.path.abspath(dir if dir is not None else _default_dir())
    for _ in range(ATTEMPTS):
        path = os.path.join(parent, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free temporary name under {parent}")


@contextlib.contextmanager
def scratch_dir(prefix: str, dir: str | None = None) -> Iterator[str]:
    """A temporary directory, removed with everything in it on exit."""
    path = mkdtemp(prefix, dir)
    try:
        yield path
    finally:
        remove_tree(path)


def remove_tree(path: str) -> None:
    """Remove `path` and everything in it, read-only directories included (a buildpack
    may leave some, e.g. Go's module cache), as `tempfile.TemporaryDirectory` does."""
    import shutil  # not at import: the build task imports this module first of all

    try:
        shutil.rmtree(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    # Top-down: each directory is made writable (and listable) before the walk enters it.
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    for dirpath, dirnames, _filenames in os.walk(path):
        for name in dirnames:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(dirpath, name), 0o700, follow_symlinks=False)
    shutil.rmtree(path, ignore_errors=True)
