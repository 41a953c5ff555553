"""Stage the app's source (a directory or a .tar.gz) into the build dir.

A tarball as `nomadpaas push` packs it is extracted without tarfile (plaintar.py), any
other the tarfile way (archive.py), with the same checks and result. The source date
(`newest_mtime_ns`) is read from the staged tree, after .slugignore.
"""

from __future__ import annotations

import os

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder.plaintar import extract_plain_tarball
from nomadpaas.slugbuilder.tarwriter import ArchiveError

__all__ = ["newest_mtime_ns", "stage_source"]


def stage_source(source: str, build_dir: str) -> None:
    """Copy a source dir (without `.git`) or safely extract a source tarball."""
    if os.path.isdir(source):
        import shutil  # a local build's: the build task's source is a tarball

        shutil.copytree(source, build_dir, symlinks=True, ignore=shutil.ignore_patterns(".git"))
        return
    if not os.path.isfile(source):
        raise BuildFailed(f"The source {source} does not exist")
    try:
        extract_plain_tarball(source, build_dir)
    except ArchiveError as exc:
        raise BuildFailed(f"The source tarball was refused: {exc}") from exc


def newest_mtime_ns(root: str) -> int:
    """The newest mtime of the staged source's files (0 for none): the slug's "source date".

    Files the build writes outside the slug's layers get it as their mtime, so the same
    source packs the same way (a source packed by `nomadpaas push` has mtime 0 throughout).
    """
    newest = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime_ns)
    return newest
