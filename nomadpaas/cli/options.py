"""Shared Typer options: --app, --json, --timeout, --detach."""

from __future__ import annotations

from typing import Annotated

import typer

AppOpt = Annotated[
    str | None,
    typer.Option(
        "--app",
        "-a",
        envvar="NOMADPAAS_APP",
        help="The app to act on (default: $NOMADPAAS_APP).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Write JSON to stdout instead of text.")]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=0.0, help="Seconds to wait before giving up (exit 5).")
]
DetachOpt = Annotated[
    bool, typer.Option("--detach", help="Return at once; the operation goes on in the cluster.")
]


def require_app(app: str | None) -> str:
    """The `--app` value (or $NOMADPAAS_APP); a usage error (exit 2) when neither is set."""
    if app:
        return app
    from nomadpaas.errors import InvalidInput

    raise InvalidInput(
        "No app given.",
        hint="Pass -a/--app APP or set NOMADPAAS_APP; `nomadpaas apps` lists the apps.",
    )
