"""`nomadpaas agent`: run the embedded Nomad-compatible agent in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("agent")(agent)


def agent(
    dev: Annotated[
        bool,
        typer.Option("--dev", help="Development mode (the only mode): one node, server+client."),
    ] = False,
    bind: Annotated[str, typer.Option("--bind", help="Address to listen on.")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option("--http-port", help="Nomad HTTP API port.")] = 4646,
    consul_port: Annotated[
        int,
        typer.Option(
            "--consul-port", help="Consul HTTP API port (service catalog, health checks)."
        ),
    ] = 8500,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="State directory (default: a fresh temp dir)."),
    ] = None,
    acl_token_file: Annotated[
        Path | None,
        typer.Option(
            "--acl-token-file",
            help="Turn ACLs on; read the management token here, or create it (mode 0600).",
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="DEBUG logs one line per request.")
    ] = "INFO",
    meta: Annotated[
        list[str] | None,
        typer.Option(
            "-meta",
            "--meta",
            metavar="KEY=VALUE",
            help="Node metadata (repeatable), as Nomad's -meta: jobs read it as ${meta.KEY}.",
        ),
    ] = None,
) -> None:
    """Run the embedded Nomad-compatible agent until SIGINT/SIGTERM."""
    from nomadpaas.agent import AgentConfig, main

    config = AgentConfig(
        dev=True,
        bind=bind,
        http_port=http_port,
        consul_port=consul_port,
        data_dir=data_dir,
        acl_token_file=acl_token_file,
        log_level=log_level,
        meta=parse_meta(meta or []),
    )
    raise typer.Exit(main(config))


def parse_meta(pairs: list[str]) -> dict[str, str]:
    """`-meta` values as a dict; a later key wins (Nomad's flag does the same)."""
    meta: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="'-meta'")
        meta[key.strip()] = value
    return meta
