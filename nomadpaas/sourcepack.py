"""Pack an app's source directory into a deterministic tar.gz for upload (DESIGN.md §4 push).

What goes in: every file of the tree except `.git`, what `.gitignore` files exclude (as
`git push` would not send untracked build products, virtualenvs or `.env` secrets) and
what the root `.slugignore` excludes (gitignore syntax, see `nomadpaas.ignorerules`).

- **Deterministic:** entries sorted, mtime 0, owner 0/0 without names, modes reduced to
  0644/0755 (0755 when any execute bit is set), gzip header without name or time. The
  same tree always gives the same bytes, so the same sha256, so the source is uploaded
  once (content-addressed key `sources/<app>/<sha256>.tar.gz`).
- **Symlinks** are stored as links, never followed. A link that is absolute or leaves the
  tree is left out with a warning (the builder would refuse it anyway); so are sockets,
  FIFOs and devices.
- **Size:** the uncompressed total is summed before a byte is written; over
  `MAX_SOURCE_BYTES` the push is refused with InvalidInput naming the size.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nomadpaas.errors import InvalidInput
from nomadpaas.ignorerules import IgnoreRule, IgnoreRules, parse_ignore_lines

__all__ = ["MAX_SOURCE_BYTES", "PackedSource", "SourceEntry", "pack_source", "scan_source"]

#: Largest source tree (uncompressed bytes) a push may send: Heroku's old slug limit.
MAX_SOURCE_BYTES = 500 * 1024**2
#: Names never packed, whatever the ignore files say.
ALWAYS_SKIPPED = frozenset({".git"})
#: gzip level: close to 9 in size for source trees, several times faster.
GZIP_LEVEL = 6
_READ_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SourceEntry:
    """One member to pack: relative POSIX path, kind, size and (for links) target."""

    relpath: str
    kind: str  # "file" | "dir" | "symlink"
    size: int = 0
    executable: bool = False
    target: str = ""


@dataclass(frozen=True)
class PackedSource:
    """The tarball `pack_source` wrote.

    Parameters:
        path: the .tar.gz file.
        sha256: lowercase hex digest of the tarball (the source digest).
        compressed_bytes: its size.
        uncompressed_bytes: the sum of the packed files' sizes.
        files: how many regular files and links went in.
        ignored: relative paths left out by `.git`, `.gitignore` or `.slugignore`
            (a directory counts once).
        warnings: entries skipped for safety (links leaving the tree, special files).
    """

    path: Path
    sha256: str
    compressed_bytes: int
    uncompressed_bytes: int
    files: int
    ignored: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _mb(size: int) -> str:
    return f"{size / 1024**2:.1f} MB"


def _read_rules(path: Path, base: str) -> list[IgnoreRule]:
    if not path.is_file() or path.is_symlink():
        return []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return list(parse_ignore_lines(text.splitlines(), base))


def scan_source(
    root: Path, *, use_gitignore: bool = True
) -> tuple[list[SourceEntry], list[str], list[str]]:
    """Walk `root` without following links; return (entries, ignored, warnings).

    Entries come sorted by path, directories before their contents.
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidInput(
            f"{root} is not a directory.", hint="Pass the app's source directory to push."
        )
    rules = IgnoreRules()
    rules.extend(_read_rules(root / ".slugignore", ""))
    entries: list[SourceEntry] = []
    ignored: list[str] = []
    warnings: list[str] = []
    # An explicit stack instead of os.walk: ignore files must be read before their
    # directory's entries are judged, and the order must not depend on the filesystem.
    pending: list[str] = [""]
    while pending:
        rel_dir = pending.pop()
        abs_dir = root / rel_dir if rel_dir else root
        if use_gitignore:
            rules.extend(_read_rules(abs_dir / ".gitignore", rel_dir))
        try:
            names = sorted(os.listdir(abs_dir))
        except OSError as exc:
            raise InvalidInput(f"Cannot read {abs_dir}: {exc.strerror}.") from None
        subdirs: list[str] = []
        for name in names:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            st = os.lstat(abs_dir / name)
            is_dir = stat.S_ISDIR(st.st_mode)
            if name in ALWAYS_SKIPPED or rules.ignored(rel, is_dir):
                ignored.append(rel)
                continue
            if is_dir:
                entries.append(SourceEntry(rel, "dir"))
                subdirs.append(rel)
            elif stat.S_ISREG(st.st_mode):
                entries.append(SourceEntry(rel, "file", st.st_size, bool(st.st_mode & 0o111)))
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(abs_dir / name)
                resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
                if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                    warnings.append(
                        f"{rel} is a symlink leaving the source tree ({target}); skipped"
                    )
                    continue
                entries.append(SourceEntry(rel, "symlink", target=target))
            else:
                warnings.append(f"{rel} is a special file (socket, FIFO or device); skipped")
        # Reverse so the stack pops them in sorted order.
        pending.extend(reversed(subdirs))
    entries.sort(key=lambda e: e.relpath.split("/"))
    return entries, sorted(ignored), warnings


def pack_source(
    root: Path,
    dest: Path,
    *,
    max_bytes: int = MAX_SOURCE_BYTES,
    use_gitignore: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> PackedSource:
    """Pack `root` into `dest` (tar.gz, entries relative to the app root, no prefix).

    Raises InvalidInput when the tree is over `max_bytes` (nothing is written then).
    `on_progress(bytes_packed, total_bytes)` is called after each file.
    """
    entries, ignored, warnings = scan_source(root, use_gitignore=use_gitignore)
    total = sum(e.size for e in entries if e.kind == "file")
    if total > max_bytes:
        biggest = sorted((e for e in entries if e.kind == "file"), key=lambda e: -e.size)[:3]
        examples = ", ".join(f"{e.relpath} ({_mb(e.size)})" for e in biggest)
        raise InvalidInput(
            f"The source at {root} is {_mb(total)}, over the {_mb(max_bytes)} limit "
            f"(largest: {examples}).",
            hint="List what the build does not need (data, media, build output) in a "
            ".slugignore file at the app root, then push again.",
        )
    packed = 0
    files = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with (
        dest.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for entry in entries:
            info = _tarinfo(entry)
            if entry.kind == "file":
                with (root / entry.relpath).open("rb") as f:
                    tar.addfile(info, f)
                packed += entry.size
                files += 1
                if on_progress is not None:
                    on_progress(packed, total)
            else:
                tar.addfile(info)
                files += entry.kind == "symlink"
    return PackedSource(
        path=dest,
        sha256=_sha256(dest),
        compressed_bytes=dest.stat().st_size,
        uncompressed_bytes=packed,
        files=files,
        ignored=tuple(ignored),
        warnings=tuple(warnings),
    )


def _tarinfo(entry: SourceEntry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.relpath)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
        info.mode = 0o777
    else:
        info.type = tarfile.REGTYPE
        info.size = entry.size
        info.mode = 0o755 if entry.executable else 0o644
    return info


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_READ_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
