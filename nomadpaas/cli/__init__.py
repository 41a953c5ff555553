"""The `nomadpaas` command line: a thin Typer layer over `nomadpaas.Platform`.

One module per command group registers its commands here. Commands call the library,
then render; the one place that turns a library error into message + hint + exit code
is `main()` below (never a traceback, unless NOMADPAAS_DEBUG is set).
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Annotated

import typer

from nomadpaas import __version__
from nomadpaas.cli import agent, apps, config, push, releases, stack
from nomadpaas.cli.output import error as render_error
from nomadpaas.cli.output import set_global_json
from nomadpaas.errors import NomadPaasError

app = typer.Typer(
    name="nomadpaas",
    help="A Heroku-style PaaS on HashiCorp Nomad: push source, get a running app.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nomadpaas {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    json_: Annotated[
        bool, typer.Option("--json", help="Write JSON to stdout (also accepted after a command).")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    set_global_json(json_)


apps.register(app)
config.register(app)
releases.register(app)
push.register(app)
stack.register(app)
agent.register(app)


def main() -> None:
    """Console-script entry point: run the app, render library errors, set the exit code."""
    as_json = "--json" in sys.argv[1:]
    try:
        _run(as_json)
    finally:
        # Nothing is left to collect: freezing the heap spares the interpreter's exit a
        # last traversal of every object (boto3, botocore's models), ~0.15 s per command.
        gc.freeze()


def _run(as_json: bool) -> None:
    try:
        app()
    except NomadPaasError as err:
        render_error(err, as_json)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo(" !     Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # the last line of defence against tracebacks
        if os.environ.get("NOMADPAAS_DEBUG"):
            raise
        typer.echo(f" !     Internal error: {type(exc).__name__}: {exc}", err=True)
        typer.echo(
            " !     This is a bug in nomadpaas; rerun with NOMADPAAS_DEBUG=1 for a traceback.",
            err=True,
        )
        sys.exit(1)
