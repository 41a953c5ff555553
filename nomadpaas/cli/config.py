"""`nomadpaas config [list] | get KEY | set K=V… | unset K…`: config vars (12factor III).

`-a/--app` and `--json` are accepted on the group too, so `nomadpaas config -a demo --json`
(a bare group runs `list`) works like `nomadpaas config list -a demo --json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nomadpaas.cli import output
from nomadpaas.cli.options import AppOpt, JsonOpt, require_app

if TYPE_CHECKING:
    from nomadpaas.models import Release

config_app = typer.Typer(
    help="Show and change an app's config vars (bare `config` lists them).",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _group_params(ctx: typer.Context) -> tuple[str | None, bool]:
    """The `-a` and `--json` given on the group (`config -a demo get A`)."""
    parent = ctx.parent
    params = parent.params if parent is not None else {}
    return params.get("app"), bool(params.get("json_"))


def _resolve(ctx: typer.Context, app: str | None, json_: bool) -> tuple[str, bool]:
    group_app, group_json = _group_params(ctx)
    return require_app(app or group_app), output.wants_json(json_ or group_json)


def _list(app: str, as_json: bool) -> None:
    from nomadpaas import Platform

    with Platform() as platform:
        config = platform.config(app)
    if as_json:
        output.print_json(config.to_dict())
        return
    if not config.vars:
        typer.echo(f"{app} has no config vars.")
        return
    output.heading(f"{app} Config Vars")
    output.key_values(sorted(config.vars.items()))


@config_app.callback()
def _config(ctx: typer.Context, app: AppOpt = None, json_: JsonOpt = False) -> None:
    if ctx.invoked_subcommand is None:
        _list(require_app(app), output.wants_json(json_))


@config_app.command("list")
def list_(ctx: typer.Context, app: AppOpt = None, json_: JsonOpt = False) -> None:
    """List the app's config vars."""
    _list(*_resolve(ctx, app, json_))


@config_app.command("get")
def get(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The config var name.")],
    app: AppOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Print one config var's value."""
    from nomadpaas import Platform

    name, as_json = _resolve(ctx, app, json_)
    with Platform() as platform:
        value = platform.config_get(name, key)
    if as_json:
        output.print_json({key: value})
    else:
        typer.echo(value)


def _render_change(verb: str, keys: list[str], release: Release, as_json: bool) -> None:
    if as_json:
        output.print_json(release.to_dict())
        return
    output.note(f"{verb} {', '.join(keys)} on {release.app}... done, {release.name}")


@config_app.command("set")
def set_(
    ctx: typer.Context,
    pairs: Annotated[
        list[str] | None, typer.Argument(help="KEY=VALUE pairs (split at the first `=`).")
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file", help="Read KEY=VALUE lines from a dotenv file.", show_default=False
        ),
    ] = None,
    app: AppOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Set config vars and record a new release."""
    from nomadpaas import InvalidInput, Platform, parse_dotenv, parse_pairs

    name, as_json = _resolve(ctx, app, json_)
    values: dict[str, str] = {}
    if from_file is not None:
        try:
            text = from_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(
                f"Cannot read {from_file}: {exc}", hint="Pass a readable UTF-8 dotenv file."
            ) from None
        values.update(parse_dotenv(text, source=str(from_file)))
    values.update(parse_pairs(pairs or []))
    if not values:
        raise InvalidInput(
            "No config vars given.",
            hint=f"Run `nomadpaas config set -a {name} KEY=VALUE …` or pass --from-file.",
        )
    with Platform() as platform:
        release = platform.config_set(name, values)
    _render_change("Setting", list(values), release, as_json)
    if not as_json:
        output.key_values(values.items())


@config_app.command("unset")
def unset(
    ctx: typer.Context,
    keys: Annotated[list[str], typer.Argument(help="The config var names to remove.")],
    app: AppOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Remove config vars and record a new release."""
    from nomadpaas import Platform

    name, as_json = _resolve(ctx, app, json_)
    with Platform() as platform:
        release = platform.config_unset(name, keys)
    _render_change("Unsetting", keys, release, as_json)


def register(app: typer.Typer) -> None:
    """Add `config` to the root app."""
    app.add_typer(config_app, name="config")
