"""Parse and validate a Procfile into {process type: command}; pure, no I/O.

Rules (reference/buildpacks.md §2.4, decided here):

- Blank lines and lines whose first non-space character is ``#`` are skipped, so a
  commented-out ``#release: …`` line never triggers the release phase.
- Every other line is ``name: command``: the name is ``[A-Za-z0-9_-]+`` (leading spaces
  allowed), split at the first ``:``, spaces around the command stripped. ``web:cmd``
  without a space is accepted.
- A name that is not a lowercase DNS label (``[a-z0-9-]``, 1–63 characters, no leading or
  trailing ``-``) is accepted with a warning: Nomad group names and DNS want labels.
- **Duplicates are rejected** (both line numbers are named). Heroku's CNB parser lets the
  last one win with a warning, but silently running the other command of a merge gone
  wrong is worse than a failed build that says where to look.
- An empty command and any other non-blank line (a merge-conflict marker, a stray word)
  are errors. All errors are collected and reported together with their line numbers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from nomadpaas.errors import InvalidInput
from nomadpaas.frozen import Frozen, init_fields

__all__ = [
    "Procfile",
    "ProcfileError",
    "ProcfileProblem",
    "is_dns_label",
    "parse_procfile",
    "render_procfile",
]

# The classic parser's name rule (heroku/buildpacks-procfile SPEC.md quotes it).
_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
# RFC 1123 label, lowercase only, as Nomad group names and DNS names need.
_DNS_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# The only process type that gets HTTP traffic.
WEB = "web"


# Frozen, not dataclasses: the build task parses Procfiles, and importing dataclasses
# (with inspect and ast) is ~7 ms of every build's start.
class ProcfileProblem(Frozen):
    """One error or warning, tied to a 1-based line number of the Procfile."""

    __match_args__ = ("line", "message")
    __slots__ = __match_args__
    line: int
    message: str

    def __init__(self, line: int, message: str) -> None:
        init_fields(self, line=line, message=message)

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ProcfileError(InvalidInput):
    """The Procfile is invalid; ``problems`` lists every bad line."""

    def __init__(self, problems: list[ProcfileProblem], source: str = "Procfile") -> None:
        details = "; ".join(str(p) for p in problems)
        super().__init__(
            f"{source} is invalid: {details}",
            hint="Each line must be `name: command`; comment lines start with `#`.",
        )
        self.problems = problems


class Procfile(Frozen):
    """A valid Procfile: process types in file order, plus warnings worth showing."""

    __match_args__ = ("processes", "warnings")
    __slots__ = __match_args__
    processes: dict[str, str]
    warnings: tuple[ProcfileProblem, ...]

    def __init__(
        self,
        processes: dict[str, str] | None = None,
        warnings: tuple[ProcfileProblem, ...] = (),
    ) -> None:
        init_fields(self, processes={} if processes is None else processes, warnings=warnings)

    @property
    def has_web(self) -> bool:
        return WEB in self.processes


def is_dns_label(name: str) -> bool:
    """True when `name` is a lowercase RFC 1123 label (1–63 of ``[a-z0-9-]``)."""
    return _DNS_LABEL_RE.fullmatch(name) is not None


def parse_procfile(text: str, *, source: str = "Procfile") -> Procfile:
    """Parse Procfile text; raise ProcfileError listing every bad line.

    Parameters:
        text: the file's contents (a leading BOM and CRLF line ends are tolerated).
        source: the name used in messages.
    """
    processes: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    errors: list[ProcfileProblem] = []
    warnings: list[ProcfileProblem] = []
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        name = name.strip()
        if not sep or _NAME_RE.fullmatch(name) is None:
            errors.append(
                ProcfileProblem(number, f"expected `name: command`, got {_excerpt(line)}")
            )
            continue
        command = command.strip()
        if not command:
            errors.append(ProcfileProblem(number, f"process type {name!r} has an empty command"))
            continue
        if name in first_seen:
            errors.append(
                ProcfileProblem(
                    number,
                    f"process type {name!r} is defined twice (first on line {first_seen[name]})",
                )
            )
            continue
        if not is_dns_label(name):
            warnings.append(
                ProcfileProblem(
                    number,
                    f"process type {name!r} is not a lowercase DNS label "
                    "(use a-z, 0-9 and -, at most 63 characters)",
                )
            )
        first_seen[name] = number
        processes[name] = command
    if errors:
        raise ProcfileError(errors, source)
    return Procfile(processes=processes, warnings=tuple(warnings))


def render_procfile(processes: Mapping[str, str]) -> str:
    """The canonical Procfile text for `processes` (one `name: command` per line)."""
    return "".join(f"{name}: {command}\n" for name, command in processes.items())


def _excerpt(line: str, limit: int = 40) -> str:
    """A short quoted piece of a bad line for the error message."""
    shown = line if len(line) <= limit else line[: limit - 1] + "…"
    return repr(shown)
