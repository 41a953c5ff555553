"""Extract a plain tar.gz (a pushed source) without `tarfile`, else as archive.py does.

`tarfile` costs ~5 ms of the build task's start (with shutil, bz2, lzma, copy, gzip…),
for a source that is nearly always what `nomadpaas push` packs (sourcepack.py): one gzip
member of ustar/pax headers, directories, regular files and relative symlinks. Such an
archive is read here with zlib, checked whole, then written as
`archive.extract_tarball` writes it (tarfile's ``data`` filter): the same entries, file
modes (``& 0o755``, owner rw, no x bits unless the owner's), mtimes (directories' set
last, symlinks' too), directories and missing parents at the default mode, no owners.

An archive is plain when (checked before anything is written):

- it is one gzip member, at most MAX_COMPRESSED_BYTES, inflating to at most
  MAX_PLAIN_BYTES, and ends with a zero block followed by nothing but zeros;
- every header is POSIX ustar with a valid checksum and octal numbers; pax extended
  headers hold only ``path`` and ``linkpath`` (UTF-8), each for the next member;
- members are directories, regular files and symlinks with UTF-8 names that are
  relative, normalised (no ``.``, ``..`` or empty parts), unique, within
  MAX_NAME_BYTES, and with no member below a file or a symlink;
- a symlink's target is relative and, walked from the link's directory, neither leaves
  the tree nor passes through a file or a symlink (so what it names is inside);
- member count and sizes are within the `ExtractLimits`.

Anything else goes through `archive.extract_tarball`, which stays the authority: it
refuses what is unsafe, with its error, and extracts the rest. So this path never
accepts an archive that one would refuse, nor writes anything else.
"""

from __future__ import annotations

import os
import posixpath
import zlib

from nomadpaas.slugbuilder.tarwriter import ArchiveError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    from nomadpaas.slugbuilder.archive import ExtractLimits

__all__ = ["MAX_COMPRESSED_BYTES", "MAX_PLAIN_BYTES", "extract_plain_tarball"]

#: Largest tarball (bytes on disk) read here; larger ones take the tarfile path.
MAX_COMPRESSED_BYTES = 16 * 1024**2
#: Most bytes it may inflate to (all held in memory while it is extracted).
MAX_PLAIN_BYTES = 64 * 1024**2
#: Longest member name (bytes), as archive.py's.
MAX_NAME_BYTES = 4096
_BLOCK = 512
_USTAR = b"ustar\x0000"
_REGULAR, _DIRECTORY, _SYMLINK, _PAX = (b"0", b"\x00"), b"5", b"2", b"x"
_PAX_KEYS = frozenset({"path", "linkpath"})


class _NotPlain(Exception):
    """The archive is outside this path's rules: extract it the tarfile way."""


class _Member:
    __slots__ = ("kind", "link", "mode", "mtime", "name", "offset", "size")

    def __init__(
        self, name: str, kind: str, mode: int, mtime: int, offset: int, size: int, link: str
    ) -> None:
        self.name, self.kind, self.mode, self.mtime = name, kind, mode, mtime
        self.offset, self.size, self.link = offset, size, link


def extract_plain_tarball(
    tarball: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    limits: ExtractLimits | None = None,
) -> int:
    """`archive.extract_tarball(tarball, dest, limits=limits)`, without tarfile for a
    plain archive: the number of members; ArchiveError for an unsafe or unreadable one,
    or a non-empty `dest` (nothing written then)."""
    from nomadpaas.slugbuilder.archive import ExtractLimits, extract_tarball

    limits = limits or ExtractLimits()
    tarball, dest = os.fspath(tarball), os.fspath(dest)
    if os.path.exists(dest) and os.listdir(dest):
        raise ArchiveError(f"refusing to extract into non-empty directory {dest}")
    try:
        data = _inflate(tarball)
        members = _plain_members(data, limits)
    except (_NotPlain, OSError):
        return extract_tarball(tarball, dest, limits=limits)
    os.makedirs(dest, exist_ok=True)
    try:
        _write(data, members, dest)
    except OSError as exc:  # as extract_tarball words what tarfile raised
        name = os.path.basename(tarball)
        raise ArchiveError(f"{name} is not a readable tarball: {exc}") from exc
    return len(members)


def _inflate(tarball: str) -> bytes:
    with open(tarball, "rb") as f:
        if os.fstat(f.fileno()).st_size > MAX_COMPRESSED_BYTES:
            raise _NotPlain("large")
        packed = f.read()
    if packed[:2] != b"\x1f\x8b":
        raise _NotPlain("not gzip")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the gzip wrapper, CRC checked
    try:
        data = inflater.decompress(packed, MAX_PLAIN_BYTES + 1)
    except zlib.error as exc:
        raise _NotPlain("bad gzip") from exc
    if len(data) > MAX_PLAIN_BYTES or not inflater.eof or inflater.unused_data:
        raise _NotPlain("too large, cut short, or more than one gzip member")
    return data


def _plain_members(data: bytes, limits: ExtractLimits) -> list[_Member]:
    """Every member of the tar `data`, checked as the module says; _NotPlain if not."""
    members: list[_Member] = []
    pax: dict[str, str] | None = None
    total = 0
    pos = 0
    while True:
        block = data[pos : pos + _BLOCK]
        if len(block) < _BLOCK:
            raise _NotPlain("no end-of-archive block")
        if block.count(0) == _BLOCK:
            if pax is not None or not members or data.count(0, pos) != len(data) - pos:
                raise _NotPlain("odd end")
            break
        kind, name, link, mode, size, mtime = _header(block)
        start = pos + _BLOCK
        pos = start + -(-size // _BLOCK) * _BLOCK
        if start + size > len(data):
            raise _NotPlain("cut short")
        if kind == "pax":
            if pax is not None:
                raise _NotPlain("two pax headers in a row")
            pax = _pax_records(data[start : start + size])
            continue
        if pax is not None:
            name = pax.get("path", "").rstrip("/") if "path" in pax else name
            link = pax.get("linkpath", link)
            pax = None
        if len(members) >= limits.max_members:
            raise _NotPlain("too many members")
        if kind == "file":
            if size > limits.max_member_bytes:
                raise _NotPlain("member over the limit")
            total += size
            if total > limits.max_total_bytes:
                raise _NotPlain("over the total limit")
        members.append(_Member(_plain_name(name), kind, mode, mtime, start, size, link))
    _check_tree(members)
    return members


def _header(block: bytes) -> tuple[str, str, str, int, int, int]:
    """(kind, name, link target, mode, size, mtime) of a ustar header block."""
    if block[257:265] != _USTAR:
        raise _NotPlain("not a POSIX ustar header")
    numbers = [_octal(block[a:b]) for a, b in _NUMBER_FIELDS]
    mode, _uid, _gid, size, mtime, checksum, _major, _minor = numbers
    unsigned = 256 + sum(block[:148]) + sum(block[156:])
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b >= 128)
    if checksum not in (unsigned, signed):
        raise _NotPlain("bad checksum")
    flag = block[156:157]
    name, link, prefix = _text(block[0:100]), _text(block[157:257]), _text(block[345:500])
    if flag in _REGULAR:
        if name.endswith("/"):
            raise _NotPlain("a file named as a directory")
        kind = "file"
    elif flag == _DIRECTORY:
        kind, name, size = "dir", name.rstrip("/"), 0
    elif flag == _SYMLINK:
        kind, size = "symlink", 0
    elif flag == _PAX:
        kind = "pax"
    else:
        raise _NotPlain(f"member type {flag!r}")
    if prefix:
        name = f"{prefix}/{name}"
    return kind, name, link, mode, size, mtime


#: Where a ustar header's numbers are: mode, uid, gid, size, mtime, checksum, dev major/minor.
_NUMBER_FIELDS = (
    (100, 108), (108, 116), (116, 124), (124, 136), (136, 148), (148, 156), (329, 337),
    (337, 345),
)  # fmt: skip


def _octal(field: bytes) -> int:
    """An octal number field as tarfile reads it (base-256 ones are not plain)."""
    if field[:1] in (b"\x80", b"\xff"):
        raise _NotPlain("base-256 number")
    try:
        number = int(field.split(b"\x00", 1)[0].decode("ascii").strip() or "0", 8)
    except ValueError as exc:  # UnicodeDecodeError is one too
        raise _NotPlain("bad number") from exc
    if number < 0:
        raise _NotPlain("negative number")
    return number


def _text(field: bytes) -> str:
    try:
        return field.split(b"\x00", 1)[0].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _NotPlain("not UTF-8") from exc


def _pax_records(payload: bytes) -> dict[str, str]:
    """``<length> <key>=<value>\\n`` records; only path and linkpath, UTF-8, no NUL."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(payload):
        length_text, space, _rest = payload[pos : pos + 20].partition(b" ")
        if not space or not length_text.isdigit():
            raise _NotPlain("bad pax record")
        length = int(length_text)
        record = payload[pos : pos + length]
        if length <= len(length_text) + 1 or len(record) != length or record[-1:] != b"\n":
            raise _NotPlain("bad pax record")
        key, equals, value = record[len(length_text) + 1 : -1].partition(b"=")
        try:
            key_text, value_text = key.decode("utf-8"), value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _NotPlain("pax record not UTF-8") from exc
        if not equals or key_text not in _PAX_KEYS or "\x00" in value_text:
            raise _NotPlain(f"pax key {key_text!r}")
        records[key_text] = value_text
        pos += length
    return records


def _plain_name(name: str) -> str:
    """`name`, if it is a plain relative one, written as `posixpath.normpath` would."""
    if not name or "\x00" in name or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise _NotPlain("bad name")
    if name != posixpath.normpath(name) or name == "." or name.startswith(("/", "../")):
        raise _NotPlain("not a plain relative name")  # "a/./b", "./a", "a//b", "/a", ".."…
    if ".." in name.split("/"):
        raise _NotPlain("name leaves the destination")
    return name


def _check_tree(members: list[_Member]) -> None:
    """Unique names, none below a file or symlink, symlinks that stay in the tree
    without passing through a file or a symlink."""
    kinds: dict[str, str] = {}
    for member in members:
        if member.name in kinds:
            raise _NotPlain(f"{member.name}: more than once")
        kinds[member.name] = member.kind
    for member in members:
        parts = member.name.split("/")
        for depth in range(1, len(parts)):
            if kinds.get("/".join(parts[:depth]), "dir") != "dir":
                raise _NotPlain(f"{member.name}: below a file or a symlink")
        if member.kind == "symlink":
            _check_link(member, kinds)


def _check_link(member: _Member, kinds: dict[str, str]) -> None:
    target = member.link
    if not target or target.startswith("/") or "\x00" in target:
        raise _NotPlain(f"{member.name}: absolute or empty symlink target")
    walked = member.name.split("/")[:-1]
    steps = [step for step in target.split("/") if step not in ("", ".")]
    for index, step in enumerate(steps):
        if step == "..":
            if not walked:
                raise _NotPlain(f"{member.name}: symlink leaves the tree")
            walked.pop()
            continue
        walked.append(step)
        last = index == len(steps) - 1
        if not last and kinds.get("/".join(walked), "dir") != "dir":
            raise _NotPlain(f"{member.name}: symlink through a file or a symlink")


def _write(data: bytes, members: list[_Member], dest: str) -> None:
    """Write the checked members as tarfile's ``data`` filter and archive.py do."""
    view = memoryview(data)
    directories: list[_Member] = []
    for member in members:
        path = os.path.join(dest, member.name)
        parent = os.path.dirname(path)
        if parent and not os.path.exists(parent):
            os.makedirs(parent)
        if member.kind == "dir":
            directories.append(member)
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
        elif member.kind == "symlink":
            os.symlink(member.link, path)
        else:
            _write_file(path, view[member.offset : member.offset + member.size], member)
    # Directories' mtimes last (writing into them changed them), as tarfile does.
    for member in sorted(directories, key=lambda m: m.name, reverse=True):
        os.utime(os.path.join(dest, member.name), (member.mtime, member.mtime))
    for member in members:  # archive.py sets symlinks' (tarfile leaves them at "now")
        if member.kind == "symlink":
            ns = member.mtime * 1_000_000_000
            os.utime(os.path.join(dest, member.name), ns=(ns, ns), follow_symlinks=False)


def _write_file(path: str, content: memoryview, member: _Member) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o666)
    try:
        written = 0
        while written < len(content):
            written += os.write(fd, content[written:])
    finally:
        os.close(fd)
    mode = member.mode & 0o755  # the data filter's: no high bits, no group/other write
    if not mode & 0o100:
        mode &= ~0o111
    os.chmod(path, mode | 0o600)
    os.utime(path, (member.mtime, member.mtime))
