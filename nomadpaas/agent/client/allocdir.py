"""Builds and destroys an allocation's directory tree; mirrors client/allocdir/alloc_dir.go.

Layout (root = ``<data_dir>/alloc/<alloc_id>``)::

    <root>/alloc/{logs,tmp,data}               shared by the group (NOMAD_ALLOC_DIR)
    <root>/<task>/{local,secrets,tmp,private}  one per task (NOMAD_TASK_DIR = <task>/local)

``secrets`` and ``private`` are 0700: raw_exec has no isolation, so permissions are all we have.
Log FIFOs live in ``alloc/logs`` as ``.<task>.stdout.fifo`` (hidden, like Nomad's).
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass

SHARED_ALLOC_NAME = "alloc"
LOG_DIR_NAME = "logs"
SHARED_TMP_NAME = "tmp"
SHARED_DATA_NAME = "data"
TASK_LOCAL = "local"
TASK_SECRETS = "secrets"
TASK_TMP = "tmp"
TASK_PRIVATE = "private"

DIR_PERMS = 0o755
SECRET_DIR_PERMS = 0o700
# Shared scratch space, like /tmp: anyone may write, only owners delete.
TMP_DIR_PERMS = 0o1777


class AllocDirError(Exception):
    """An allocation or task directory could not be built or removed."""


def _check_name(kind: str, name: str) -> None:
    # Names become path components: refuse anything that could climb out of the tree.
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise AllocDirError(f"invalid {kind} {name!r}")


@dataclass(frozen=True)
class TaskDir:
    """The host paths of one task's directories (Nomad: ``allocdir.TaskDir``)."""

    dir: str
    local_dir: str
    secrets_dir: str
    tmp_dir: str
    private_dir: str
    log_dir: str
    stdout_fifo: str
    stderr_fifo: str


class AllocDir:
    """``<data_dir>/alloc/<alloc_id>``: build it, describe task dirs, destroy it."""

    def __init__(self, data_dir: str, alloc_id: str) -> None:
        _check_name("allocation ID", alloc_id)
        self.alloc_id = alloc_id
        self.alloc_root = _alloc_root(data_dir)
        # Plain concatenation: the parts are checked names below an absolute, normal path.
        self.root = f"{self.alloc_root}/{alloc_id}"
        self.shared_dir = f"{self.root}/{SHARED_ALLOC_NAME}"
        self.log_dir = f"{self.shared_dir}/{LOG_DIR_NAME}"
        # The shared dirs were built by this instance: a task's build skips them (the
        # alloc runner builds them first, then each task dir hook builds its task).
        self._shared_built = False
        # Paths only, made once per task: the task runner and its task dir hook both ask.
        self._task_dirs: dict[str, TaskDir] = {}

    def task_dir(self, task: str) -> TaskDir:
        known = self._task_dirs.get(task)
        if known is not None:
            return known
        _check_name("task name", task)
        base = f"{self.root}/{task}"
        log_dir = self.log_dir
        td = self._task_dirs[task] = TaskDir(
            dir=base,
            local_dir=f"{base}/{TASK_LOCAL}",
            secrets_dir=f"{base}/{TASK_SECRETS}",
            tmp_dir=f"{base}/{TASK_TMP}",
            private_dir=f"{base}/{TASK_PRIVATE}",
            log_dir=log_dir,
            stdout_fifo=f"{log_dir}/.{task}.stdout.fifo",
            stderr_fifo=f"{log_dir}/.{task}.stderr.fifo",
        )
        return td

    def build(self, tasks: list[str]) -> dict[str, TaskDir]:
        """Create the shared dirs and every task's dirs; idempotent (task restarts, recovery)."""
        if not self._shared_built:
            self._build_shared()
        dirs: dict[str, TaskDir] = {}
        for task in tasks:
            td = self.task_dir(task)
            _mkdir(td.dir, DIR_PERMS)
            _mkdir(td.local_dir, DIR_PERMS)
            _mkdir(td.secrets_dir, SECRET_DIR_PERMS)
            _mkdir(td.tmp_dir, TMP_DIR_PERMS)
            _mkdir(td.private_dir, SECRET_DIR_PERMS)
            dirs[task] = td
        return dirs

    def _build_shared(self) -> None:
        try:
            _mkdir(self.root, DIR_PERMS)
        except (FileNotFoundError, NotADirectoryError):
            # The data dir's first allocation: make `<data_dir>/alloc` first (or say why
            # it cannot be). Trying the root first saves a stat of that dir for every
            # other allocation.
            os.makedirs(os.path.dirname(self.alloc_root), exist_ok=True)
            _mkdir(self.alloc_root, DIR_PERMS)
            _mkdir(self.root, DIR_PERMS)
        _mkdir(self.shared_dir, DIR_PERMS)
        _mkdir(self.log_dir, DIR_PERMS)
        _mkdir(os.path.join(self.shared_dir, SHARED_TMP_NAME), TMP_DIR_PERMS)
        _mkdir(os.path.join(self.shared_dir, SHARED_DATA_NAME), DIR_PERMS)
        self._shared_built = True

    def destroy(self) -> None:
        """Remove the whole tree. Symlinks are unlinked, never followed (a task may plant
        ``local/x -> /home``); a root that is itself a symlink is only unlinked."""
        if os.path.islink(self.root):
            os.unlink(self.root)
            return
        if not os.path.exists(self.root):
            return
        # On Linux rmtree is fd-based (rmtree.avoids_symlink_attacks): it never descends a link.
        if not shutil.rmtree.avoids_symlink_attacks:
            raise AllocDirError("refusing to destroy: this platform's rmtree may follow symlinks")
        try:
            shutil.rmtree(self.root)
        except OSError as exc:
            raise AllocDirError(f"failed to destroy alloc dir {self.root}: {exc}") from exc


def _alloc_root(data_dir: str) -> str:
    """``<data_dir>/alloc`` as an absolute, normal path; remembered for an absolute data
    dir (every allocation of an agent asks for the same one), computed for a relative."""
    if not os.path.isabs(data_dir):
        return os.path.join(os.path.abspath(data_dir), "alloc")
    return _absolute_alloc_root(data_dir)


@functools.lru_cache(maxsize=16)
def _absolute_alloc_root(data_dir: str) -> str:
    return os.path.join(os.path.normpath(data_dir), "alloc")


def _umask() -> int | None:
    """The process umask, read without changing it (os.umask would race other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return None


_UMASK = _umask()


def _mkdir(path: str, perms: int) -> None:
    # One syscall for a new directory (a dozen per allocation): mkdir refuses to follow or
    # replace an existing entry, so the symlink and type checks are only needed then.
    try:
        os.mkdir(path, perms)
    except FileExistsError:
        if os.path.islink(path):
            raise AllocDirError(f"refusing to use {path}: it is a symlink") from None
        if not os.path.isdir(path):
            raise AllocDirError(f"{path} exists and is not a directory") from None
    else:
        if _UMASK is not None and perms & ~_UMASK == perms:
            return  # the umask took nothing away: the mode is already exact
    # mkdir's mode is filtered by the umask; the permissions here are part of the contract.
    os.chmod(path, perms)
