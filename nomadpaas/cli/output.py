"""All terminal rendering: `-----> ` steps, tables, JSON documents, errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import typer

from nomadpaas.errors import NomadPaasError

STEP = "-----> "
INDENT = "       "


#: Set by the root callback when `--json` comes before the command name.
_global_json = False


def set_global_json(value: bool) -> None:
    global _global_json
    _global_json = value


def wants_json(local: bool) -> bool:
    """`--json` given after the command name, or globally before it."""
    return local or _global_json


def print_json(doc: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def step(message: str) -> None:
    """A Heroku-style step line on stderr, so stdout stays clean for data."""
    typer.echo(STEP + message, err=True)


def detail(message: str) -> None:
    typer.echo(INDENT + message, err=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A plain aligned table on stdout (no box drawing: it must paste into a ticket)."""
    materialised = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in materialised:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    line = "  ".join(h.upper().ljust(widths[i]) for i, h in enumerate(headers))
    typer.echo(line.rstrip())
    for row in materialised:
        typer.echo("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())


def error(err: NomadPaasError, as_json: bool) -> None:
    """Render a library error: message and hint on stderr (or JSON on stdout)."""
    if as_json:
        print_json(err.to_dict())
        return
    typer.echo(f" !     {err.message}", err=True)
    if err.hint:
        typer.echo(f" !     {err.hint}", err=True)


def heading(title: str) -> None:
    """A Heroku-style `=== title` line on stdout."""
    typer.echo(f"=== {title}")


def key_values(pairs: Iterable[tuple[str, Any]], separator: str = ":") -> None:
    """Aligned `Key: value` lines on stdout (Heroku's info layout); None shows as empty."""
    rows = [(f"{key}{separator}", "" if value is None else str(value)) for key, value in pairs]
    width = max((len(key) for key, _ in rows), default=0)
    for key, value in rows:
        typer.echo(f"{key.ljust(width)} {value}".rstrip())


def note(message: str) -> None:
    """A plain status line on stderr (`Setting A on demo... done, v2`)."""
    typer.echo(message, err=True)
