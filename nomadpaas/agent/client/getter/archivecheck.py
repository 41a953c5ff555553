"""Validates every archive member before anything is written; hardens go-getter's decompress_*.go.

Python's `tarfile` `filter='data'` is necessary but not enough on 3.11.7 (CVE-2025-4517 and
friends predate it, and it enforces no sizes), so the whole member list is checked first:
names, types, links, counts and sizes. A link is judged against the *final* tree of the
archive, resolving through other symlinks the way the kernel would, so two-step attacks
(`a -> .` then `x -> a/../..`) are caught whatever the member order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

GIB = 1024**3
MAX_SYMLINK_HOPS = 40  # Linux's MAXSYMLINKS: more hops than this is a loop
MAX_NAME_BYTES = 4096  # Linux PATH_MAX

Kind = Literal["dir", "file", "symlink", "hardlink"]


class ArchiveError(Exception):
    """An archive was refused or could not be unpacked; the message names the member."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps enforced before extraction; the defaults suit artifacts and slugs alike."""

    max_members: int = 100_000
    max_total_bytes: int = 2 * GIB  # uncompressed, summed over regular members
    max_member_bytes: int = 2 * GIB
    max_name_bytes: int = MAX_NAME_BYTES
    # In-tree relative symlinks: a slug needs them (.venv/bin/python -> python3,
    # node_modules/.bin/x -> ../x/bin.js). Absolute or escaping links are always refused.
    allow_symlinks: bool = True


@dataclass(frozen=True)
class Member:
    """One archive member after validation: a normalised relative path and its kind."""

    name: str  # normalised: no leading "./", no empty or "." parts; "" is the root
    kind: Kind
    size: int = 0
    link: str = ""  # symlink target as written, or normalised hardlink target


def quoted(name: str) -> str:
    """Quote a member name for an error message, like Go's %q."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\x00", "\\x00") + '"'


def normalize_name(raw: str, limits: ArchiveLimits) -> str:
    """Return the member path relative to the destination, or raise naming the member."""
    if "\x00" in raw:
        raise ArchiveError(f"archive member {quoted(raw)} contains a NUL byte")
    if len(raw.encode("utf-8", "surrogateescape")) > limits.max_name_bytes:
        raise ArchiveError(f"archive member {quoted(raw[:64] + '...')} has a name that is too long")
    if raw.startswith("/"):
        raise ArchiveError(f"archive member {quoted(raw)} is an absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"archive member {quoted(raw)} escapes the destination")
    return "/".join(parts)


class _Escape(Exception):
    pass


@dataclass
class MemberCheck:
    """Accumulates members in archive order, then validates the whole tree in `finish`."""

    limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    members: list[Member] = field(default_factory=list)
    total_bytes: int = 0
    _by_name: dict[str, Member] = field(default_factory=dict)
    _raw: dict[str, str] = field(default_factory=dict)

    def add(self, raw: str, kind: Kind | None, size: int = 0, link: str = "") -> None:
        """Check one member as it is read; `kind=None` means a type we refuse."""
        if len(self.members) >= self.limits.max_members:
            raise ArchiveError(f"archive has more than {self.limits.max_members} members")
        if raw == "":
            raise ArchiveError('archive member "" has an empty name')
        name = normalize_name(raw, self.limits)
        if kind is None:
            raise ArchiveError(
                f"archive member {quoted(raw)} is a device, FIFO, sparse or unknown-type "
                "file, which is not allowed"
            )
        if name == "" and kind != "dir":
            raise ArchiveError(f"archive member {quoted(raw)} has an empty name")
        if kind == "file":
            if size > self.limits.max_member_bytes:
                raise ArchiveError(
                    f"archive member {quoted(raw)} is too large "
                    f"({size} bytes, limit {self.limits.max_member_bytes})"
                )
            self.total_bytes += size
            if self.total_bytes > self.limits.max_total_bytes:
                raise ArchiveError(
                    f"archive is too large: more than {self.limits.max_total_bytes} "
                    f"bytes uncompressed (at member {quoted(raw)})"
                )
        previous = self._by_name.get(name)
        if previous is not None and not (previous.kind == "dir" and kind == "dir"):
            raise ArchiveError(f"archive member {quoted(raw)} appears more than once")
        if kind == "hardlink":
            link = self._check_hardlink(raw, link)
        elif kind == "symlink":
            self._check_symlink_text(raw, link)
        member = Member(name=name, kind=kind, size=size, link=link)
        self.members.append(member)
        self._by_name[name] = member
        self._raw[name] = raw

    def _check_hardlink(self, raw: str, link: str) -> str:
        if link == "" or "\x00" in link or link.startswith("/"):
            raise ArchiveError(f"archive member {quoted(raw)} is a hardlink outside the archive")
        parts = [p for p in link.split("/") if p not in ("", ".")]
        target = "/".join(parts)
        earlier = self._by_name.get(target)
        if ".." in parts or earlier is None or earlier.kind != "file":
            raise ArchiveError(
                f"archive member {quoted(raw)} is a hardlink to {quoted(link)}, "
                "which is not an earlier regular file in the archive"
            )
        return target

    def _check_symlink_text(self, raw: str, link: str) -> None:
        if not self.limits.allow_symlinks:
            raise ArchiveError(
                f"archive member {quoted(raw)} is a symlink; symlinks are not allowed"
            )
        if link == "" or "\x00" in link:
            raise ArchiveError(f"archive member {quoted(raw)} is a symlink with an invalid target")
        if link.startswith("/"):
            raise ArchiveError(
                f"archive member {quoted(raw)} is a symlink to an absolute path {quoted(link)}"
            )
        if len(link.encode("utf-8", "surrogateescape")) > self.limits.max_name_bytes:
            raise ArchiveError(
                f"archive member {quoted(raw)} has a symlink target that is too long"
            )

    def finish(self) -> list[Member]:
        """Validate the complete tree (parents, link targets) and return the members."""
        for member in self.members:
            self._check_parents(member)
        for member in self.members:
            if member.kind != "symlink":
                continue
            parent = member.name.split("/")[:-1]
            try:
                self._resolve(parent, member.link, 0)
            except _Escape:
                raise ArchiveError(
                    f"archive member {quoted(self._raw[member.name])} is a symlink to "
                    f"{quoted(member.link)}, which escapes the destination"
                ) from None
        return self.members

    def _check_parents(self, member: Member) -> None:
        # Legitimate archives never hold members beneath a symlink (tar does not follow
        # links when packing), so any such member is a write-through attempt.
        parts = member.name.split("/")
        for i in range(1, len(parts)):
            prefix = self._by_name.get("/".join(parts[:i]))
            if prefix is None or prefix.kind == "dir":
                continue
            what = "symlink" if prefix.kind == "symlink" else "non-directory member"
            raise ArchiveError(
                f"archive member {quoted(self._raw[member.name])} is beneath {what} "
                f"{quoted(self._raw[prefix.name])}"
            )

    def _resolve(self, base: list[str], target: str, hops: int) -> list[str]:
        """Resolve `target` from directory `base` through the archive's symlinks, like realpath."""
        if hops > MAX_SYMLINK_HOPS:
            raise _Escape
        stack = list(base)
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not stack:
                    raise _Escape
                stack.pop()
                continue
            stack.append(part)
            entry = self._by_name.get("/".join(stack))
            if entry is not None and entry.kind == "symlink":
                stack.pop()
                stack = self._resolve(stack, entry.link, hops + 1)
        return stack
