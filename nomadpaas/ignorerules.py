"""A small, real `.gitignore` matcher: which paths of a source tree a push leaves out.

Implements the gitignore(5) rules that matter for pushing source:

- blank lines and ``#`` comments are skipped (``\\#`` and ``\\!`` escape the first char);
  trailing spaces are dropped;
- ``!pattern`` re-includes what an earlier pattern excluded. As in git, a file inside an
  excluded *directory* cannot be re-included (the walk never enters that directory);
- a pattern with a ``/`` at the start or in the middle is anchored to the directory of
  the file it came from; otherwise it matches a name at any depth below it;
- a trailing ``/`` matches directories only;
- ``*`` and ``?`` never match ``/``; ``[abc]``/``[!a-z]`` are character classes;
  ``**/`` at the start or between slashes matches zero or more directories, and a
  trailing ``/**`` matches everything inside.

The last matching pattern wins; rules from a deeper ignore file come after (and so win
over) those of the directories above it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["IgnoreRule", "IgnoreRules", "parse_ignore_lines"]


@dataclass(frozen=True)
class IgnoreRule:
    """One compiled pattern line.

    Parameters:
        text: the line as written (for messages).
        base: the directory (relative POSIX path, "" for the root) whose ignore file
            held the line; the rule applies only below it.
        regex: the compiled glob.
        negated: a ``!`` line (re-include).
        anchored: matched against the path below `base`, not the name.
        directories_only: a trailing ``/``.
    """

    text: str
    base: str
    regex: re.Pattern[str]
    negated: bool
    anchored: bool
    directories_only: bool

    def matches(self, relpath: str, is_dir: bool) -> bool:
        """Does the rule match `relpath` (relative to the tree root)?"""
        if self.directories_only and not is_dir:
            return False
        if self.base:
            if not relpath.startswith(self.base + "/"):
                return False
            relpath = relpath[len(self.base) + 1 :]
        subject = relpath if self.anchored else relpath.rsplit("/", 1)[-1]
        return self.regex.fullmatch(subject) is not None


def parse_ignore_lines(lines: Iterable[str], base: str = "") -> list[IgnoreRule]:
    """Compile the lines of one ignore file that lives in directory `base`."""
    rules: list[IgnoreRule] = []
    for raw in lines:
        line = raw.rstrip("\n").rstrip("\r")
        if not line.endswith("\\ "):
            line = line.rstrip(" \t")
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        if negated or line.startswith(("\\#", "\\!")):
            line = line[1:]  # drop the `!`, or the backslash escaping a leading #/!
        directories_only = line.endswith("/")
        body = line.rstrip("/")
        if not body:
            continue
        anchored = "/" in body
        body = body.lstrip("/")
        if not body:
            continue
        rules.append(
            IgnoreRule(
                text=raw.strip(),
                base=base.strip("/"),
                regex=re.compile(_translate(body), re.DOTALL),
                negated=negated,
                anchored=anchored,
                directories_only=directories_only,
            )
        )
    return rules


def _translate(glob: str) -> str:
    """A gitignore glob as a regex (without anchors: callers use fullmatch)."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if glob.startswith("**", i):
                at_segment_start = i == 0 or glob[i - 1] == "/"
                after = glob[i + 2 : i + 3]
                if at_segment_start and after == "/":
                    out.append("(?:.*/)?")  # zero or more directories
                    i += 3
                    continue
                if at_segment_start and after == "":
                    out.append(".*")  # everything inside
                    i += 2
                    continue
                i += 1  # `a**b`: two stars inside a name act as one
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = _class_end(glob, i)
            if end < 0:
                out.append(re.escape(c))
            else:
                inner = glob[i + 1 : end]
                if inner.startswith("!"):
                    inner = "^" + inner[1:]
                out.append("[" + inner.replace("\\", "\\\\") + "]")
                i = end
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _class_end(glob: str, start: int) -> int:
    """Index of the `]` closing the class that opens at `start`, or -1."""
    j = start + 1
    if j < len(glob) and glob[j] in "!^":
        j += 1
    if j < len(glob) and glob[j] == "]":
        j += 1  # a leading `]` is a literal member
    while j < len(glob):
        if glob[j] == "]":
            return j
        if glob[j] == "/":
            return -1  # a class never spans a separator
        j += 1
    return -1


class IgnoreRules:
    """Every rule that applies to one tree, in precedence order (last match wins)."""

    def __init__(self, rules: Sequence[IgnoreRule] = ()) -> None:
        self._rules: list[IgnoreRule] = list(rules)

    def extend(self, rules: Iterable[IgnoreRule]) -> None:
        """Add rules that win over the ones already present (a deeper ignore file)."""
        self._rules.extend(rules)

    def __len__(self) -> int:
        return len(self._rules)

    def ignored(self, relpath: str, is_dir: bool) -> bool:
        """True when the last rule matching `relpath` excludes it."""
        verdict = False
        for rule in self._rules:
            if rule.matches(relpath, is_dir):
                verdict = not rule.negated
        return verdict
