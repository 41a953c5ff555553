"""Apply `.slugignore` to the build dir before any buildpack runs (Heroku's order).

Deleting first means ignored files cannot affect the build, and build output is never
dropped by a pattern meant for source files (reference/buildpacks.md §2.2). The syntax
is roughly `.gitignore`'s:

- blank lines and ``#`` comments are skipped; ``!`` negation is not supported (warned);
- a pattern without ``/`` matches a file or directory name at any depth (``*.psd``);
- a leading ``/`` or a ``/`` inside anchors the pattern to the app root (``/docs``,
  ``assets/raw``); ``**`` matches across directories; a trailing ``/`` matches only
  directories. ``*`` may cross ``/`` in anchored patterns (fnmatch semantics).

`.git` is always removed: history never belongs in a slug.
"""

from __future__ import annotations

import fnmatch
import os
import re

from nomadpaas.frozen import Frozen, init_fields

__all__ = ["IgnorePattern", "SlugignoreResult", "apply_slugignore", "parse_slugignore"]

ALWAYS_REMOVED = (".git",)


class IgnorePattern(Frozen):
    """One `.slugignore` line, compiled."""

    __match_args__ = ("text", "regex", "anchored", "directories_only")
    __slots__ = __match_args__
    text: str
    regex: re.Pattern[str]
    anchored: bool
    directories_only: bool

    def __init__(
        self, text: str, regex: re.Pattern[str], anchored: bool, directories_only: bool
    ) -> None:
        init_fields(
            self, text=text, regex=regex, anchored=anchored, directories_only=directories_only
        )

    def matches(self, relpath: str, is_dir: bool) -> bool:
        if self.directories_only and not is_dir:
            return False
        subject = relpath if self.anchored else relpath.rsplit("/", 1)[-1]
        return self.regex.fullmatch(subject) is not None


class SlugignoreResult(Frozen):
    """What was removed (relative POSIX paths) and warnings about unsupported lines."""

    __match_args__ = ("removed", "warnings")
    __slots__ = __match_args__
    removed: tuple[str, ...]
    warnings: tuple[str, ...]

    def __init__(self, removed: tuple[str, ...], warnings: tuple[str, ...]) -> None:
        init_fields(self, removed=removed, warnings=warnings)


def parse_slugignore(text: str) -> tuple[list[IgnorePattern], list[str]]:
    """Compile `.slugignore` text; returns (patterns, warnings)."""
    patterns: list[IgnorePattern] = []
    warnings: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!"):
            warnings.append(f".slugignore line {number}: negation ({line!r}) is not supported")
            continue
        directories_only = line.endswith("/")
        body = line.rstrip("/")
        anchored = body.startswith("/") or "/" in body
        body = body.lstrip("/")
        if not body or any(part == ".." for part in body.split("/")):
            warnings.append(f".slugignore line {number}: ignoring pattern {line!r}")
            continue
        patterns.append(
            IgnorePattern(
                line, _compile(body), anchored=anchored, directories_only=directories_only
            )
        )
    return patterns, warnings


def _compile(glob: str) -> re.Pattern[str]:
    # "**/" matches zero or more directories; the rest is fnmatch's translation.
    pieces = [fnmatch.translate(part)[4:-3] for part in glob.split("**/")]
    return re.compile("(?:.*/)?".join(pieces), re.DOTALL)


def apply_slugignore(build_dir: str | os.PathLike[str]) -> SlugignoreResult:
    """Delete `.git` and everything `.slugignore` matches inside `build_dir`.

    Symlinks are removed as links, never followed, so a pattern cannot reach outside.
    """
    root = os.fspath(build_dir)
    ignore_file = os.path.join(root, ".slugignore")
    patterns: list[IgnorePattern] = []
    warnings: list[str] = []
    if os.path.isfile(ignore_file) and not os.path.islink(ignore_file):
        with open(ignore_file, errors="replace") as f:
            patterns, warnings = parse_slugignore(f.read())
    removed: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_base = os.path.relpath(dirpath, root)
        for name in list(dirnames):
            rel = name if rel_base == "." else f"{rel_base}/{name}"
            path = os.path.join(dirpath, name)
            is_dir = not os.path.islink(path)
            if (rel in ALWAYS_REMOVED) or any(p.matches(rel, is_dir) for p in patterns):
                if is_dir:
                    import shutil  # not at import: a pushed source has no .git to remove

                    shutil.rmtree(path)
                else:
                    os.unlink(path)
                removed.append(rel)
                dirnames.remove(name)
        for name in filenames:
            rel = name if rel_base == "." else f"{rel_base}/{name}"
            if any(p.matches(rel, False) for p in patterns):
                os.unlink(os.path.join(dirpath, name))
                removed.append(rel)
    return SlugignoreResult(removed=tuple(sorted(removed)), warnings=tuple(warnings))
