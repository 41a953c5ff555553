"""Extract a build-cache tarball with GNU tar, after checking every header in Python.

The build cache is our own artifact (packed by archive.pack_directory), but it comes back
from S3, so it is untrusted input (reference/buildpacks.md §7). Python's tarfile with the
``data`` filter writes ~250 small files 2-3× slower than GNU tar; so:

1. gunzip to a plain tar in the work dir (one decompression, bounded in size);
2. read every header with tarfile (seeks over the data: cheap) and accept only a plain
   tree: unique names inside the destination; regular files, directories, relative
   symlinks and hardlinks to earlier files; no member below a symlink or a file; no
   link whose target passes through a symlink or leaves the tree; modes within 0o755
   (no setuid/setgid/sticky, no group/other write) with owner access; member count and
   sizes within `ExtractLimits`; only ordinary pax keys; nothing but zero blocks after
   the last member (so GNU tar, which skips a bad header and reads on, sees no member
   tarfile did not);
3. let GNU tar write exactly that file (``--no-same-owner``, modes as checked; a clean
   environment so ``TAR_OPTIONS`` cannot add options).

Anything outside those rules (or no tar binary, or tar failing) goes through
`archive.extract_tarball` instead, which stays the authority: it refuses what is unsafe,
with its error. So this path never accepts an archive the Python path would refuse.
"""

from __future__ import annotations

import contextlib
import os
import posixpath

from nomadpaas.slugbuilder.archive import ArchiveError, ExtractLimits, extract_tarball

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    import tarfile

__all__ = ["extract_cache_tarball"]

#: Longest member name accepted on this path (bytes); PATH_MAX on Linux is 4096.
MAX_NAME_BYTES = 4096
#: Seconds GNU tar may take to write the tree.
TAR_TIMEOUT_S = 300.0
#: Mode bits a member may carry: rwxr-xr-x at most.
_ALLOWED_MODE = 0o755
#: pax keys with the same meaning to tarfile and GNU tar (others, e.g. GNU.sparse.*, not).
_PAX_KEYS = frozenset({"path", "linkpath", "size", "mtime", "atime", "ctime", "uid", "gid",
                       "uname", "gname"})  # fmt: skip
_BLOCK = 512
_COPY_BYTES = 1024 * 1024


class _NotPlain(Exception):
    """The archive is outside this path's rules: extract it the Python way."""


def extract_cache_tarball(
    tarball: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    scratch: str | os.PathLike[str],
    limits: ExtractLimits | None = None,
) -> int:
    """Extract the gzip (or plain) tarball into the empty or new dir `dest`; return the
    number of members. `scratch` holds the decompressed copy meanwhile. Raises
    ArchiveError (from the Python path) for an unsafe or unreadable archive."""
    # Not at import: only a build restoring its cache from S3 needs these (tarfile, with
    # shutil, bz2, lzma…, is ~5 ms of the build task's start).
    import shutil
    import tarfile

    limits = limits or ExtractLimits()
    tar_bin = shutil.which("tar")
    tarball, dest = os.fspath(tarball), os.fspath(dest)
    if os.path.exists(dest) and os.listdir(dest):
        raise ArchiveError(f"refusing to extract into non-empty directory {dest}")
    if tar_bin is None:
        return extract_tarball(tarball, dest, limits=limits)
    plain = os.path.join(scratch, f".{os.path.basename(tarball)}.tar")
    try:
        try:
            _decompress(tarball, plain, limits)
            with tarfile.open(plain, mode="r:") as tar:
                count = _check_plain(tar, limits)
                end = tar.offset
            _check_trailer(plain, end)
        except (_NotPlain, tarfile.TarError, EOFError, OSError):
            return extract_tarball(tarball, dest, limits=limits)
        os.makedirs(dest, exist_ok=True)
        if _run_tar(tar_bin, plain, dest):
            return count
        _empty(dest)  # tar refused or broke off: the Python path decides
        return extract_tarball(tarball, dest, limits=limits)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(plain)


def _decompress(tarball: str, plain: str, limits: ExtractLimits) -> None:
    """gunzip (or copy) `tarball` to `plain`, stopping past what the limits allow."""
    # Headers and padding add at most a few blocks per member on top of the data.
    cap = limits.max_total_bytes + (limits.max_members + 2) * 3 * _BLOCK + 20 * _BLOCK
    with open(tarball, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    import gzip  # only a build restoring its cache from S3 needs it, not the task's start

    opener = gzip.open if gzipped else open
    written = 0
    with opener(tarball, "rb") as src, open(plain, "wb") as out:
        while block := src.read(_COPY_BYTES):
            written += len(block)
            if written > cap:
                raise _NotPlain("larger than the limits allow")
            out.write(block)


def _check_plain(tar: tarfile.TarFile, limits: ExtractLimits) -> int:
    import tarfile  # loaded by now (extract_cache_tarball): for CONTTYPE

    if tar.pax_headers:  # global pax headers change later members' meaning
        raise _NotPlain("global pax header")
    members: list[tarfile.TarInfo] = []
    kinds: dict[str, str] = {}  # normalised name -> "reg" | "dir" | "sym" | "lnk"
    total = 0
    for info in tar:
        if len(members) >= limits.max_members:
            raise _NotPlain("too many members")
        name = _plain_name(info.name)
        if name in kinds or set(info.pax_headers) - _PAX_KEYS:
            raise _NotPlain(f"{name}: duplicate, or unusual pax keys")
        if info.mode & ~_ALLOWED_MODE:
            raise _NotPlain(f"{name}: mode {info.mode:o}")
        if info.isreg() and not info.issparse() and info.type != tarfile.CONTTYPE:
            if info.mode & 0o600 != 0o600 or info.size > limits.max_member_bytes:
                raise _NotPlain(f"{name}: mode or size")
            total += info.size
            if total > limits.max_total_bytes:
                raise _NotPlain("too many bytes")
            kinds[name] = "reg"
        elif info.isdir():
            if info.mode & 0o700 != 0o700:
                raise _NotPlain(f"{name}: directory mode {info.mode:o}")
            kinds[name] = "dir"
        elif info.issym():
            kinds[name] = "sym"
        elif info.islnk():
            if kinds.get(_plain_name(info.linkname)) != "reg":
                raise _NotPlain(f"{name}: hardlink to {info.linkname!r}")
            kinds[name] = "lnk"
        else:
            raise _NotPlain(f"{name}: type {info.type!r}")
        members.append(info)
    for info in members:
        name = posixpath.normpath(info.name)
        _check_parents(name, kinds)
        if info.issym():
            _check_symlink(name, info.linkname, kinds)
    return len(members)


def _plain_name(name: str) -> str:
    if not name or "\x00" in name or len(name.encode()) > MAX_NAME_BYTES or "\\" in name:
        raise _NotPlain(f"bad name {name[:80]!r}")
    if name.startswith("/") or any(part == ".." for part in name.split("/")):
        raise _NotPlain(f"{name}: leaves the destination")
    return posixpath.normpath(name)


def _check_parents(name: str, kinds: dict[str, str]) -> None:
    """Every directory on the way to `name` is a real directory (or not in the archive)."""
    parent = posixpath.dirname(name)
    while parent not in ("", "."):
        if kinds.get(parent, "dir") != "dir":
            raise _NotPlain(f"{name}: below the {kinds[parent]} {parent}")
        parent = posixpath.dirname(parent)


def _check_symlink(name: str, target: str, kinds: dict[str, str]) -> None:
    """The target resolves inside the tree without passing through another symlink."""
    if not target or target.startswith("/") or "\x00" in target:
        raise _NotPlain(f"{name}: symlink target {target!r}")
    parts = [p for p in posixpath.dirname(name).split("/") if p not in ("", ".")]
    for step in target.split("/"):
        if step in ("", "."):
            continue
        if step == "..":
            if not parts:
                raise _NotPlain(f"{name}: symlink target {target!r} leaves the tree")
            parts.pop()
            continue
        parts.append(step)
        if kinds.get("/".join(parts)) == "sym":
            raise _NotPlain(f"{name}: symlink target {target!r} passes through a symlink")


def _check_trailer(plain: str, end: int) -> None:
    """Nothing but zero blocks after the last member tarfile read."""
    with open(plain, "rb") as f:
        f.seek(end)
        while block := f.read(_COPY_BYTES):
            if block.count(0) != len(block):
                raise _NotPlain("data after the end of the archive")


def _run_tar(tar_bin: str, plain: str, dest: str) -> bool:
    import subprocess  # only a build restoring its cache from S3 runs tar, not every start

    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}
    try:
        done = subprocess.run(
            [tar_bin, "-x", "-f", plain, "-C", dest, "--no-same-owner",
             "--same-permissions"],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=TAR_TIMEOUT_S,
            check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _empty(dest: str) -> None:
    with os.scandir(dest) as scanner:
        entries = list(scanner)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            import shutil

            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
