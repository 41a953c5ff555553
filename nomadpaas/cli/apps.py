"""`nomadpaas apps [list] | create NAME | info | destroy`: the app lifecycle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from nomadpaas.cli import output
from nomadpaas.cli.options import AppOpt, JsonOpt, require_app
from nomadpaas.models import iso

if TYPE_CHECKING:
    from nomadpaas.models import App

apps_app = typer.Typer(
    help="Create, list, inspect and destroy apps (bare `apps` lists them).",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _render_list(apps: list[App], as_json: bool) -> None:
    if as_json:
        output.print_json([a.to_dict() for a in apps])
        return
    if not apps:
        typer.echo("No apps yet. Create one with `nomadpaas apps create NAME`.")
        return
    output.heading("Apps")
    output.table(
        ["name", "latest release", "created", "web url"],
        [
            [
                a.name,
                f"v{a.latest_release}" if a.latest_release else "-",
                iso(a.created_at),
                a.web_url,
            ]
            for a in apps
        ],
    )


def _list(as_json: bool) -> None:
    from nomadpaas import Platform

    with Platform() as platform:
        apps = platform.list_apps()
    _render_list(apps, output.wants_json(as_json))


@apps_app.callback()
def _apps(ctx: typer.Context, json_: JsonOpt = False) -> None:
    if ctx.invoked_subcommand is None:
        _list(json_)


@apps_app.command("list")
def list_(json_: JsonOpt = False) -> None:
    """List every app."""
    _list(json_)


@apps_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The app name: a DNS label like `my-app`.")],
    json_: JsonOpt = False,
) -> None:
    """Create an app (a name for releases, config and processes)."""
    from nomadpaas import Platform

    with Platform() as platform:
        app = platform.create_app(name)
    if output.wants_json(json_):
        output.print_json(app.to_dict())
        return
    output.note(f"Creating {app.name}... done")
    typer.echo(app.web_url or app.name)


@apps_app.command("info")
def info(app: AppOpt = None, json_: JsonOpt = False) -> None:
    """Show an app: creation time, latest release, URL."""
    from nomadpaas import Platform

    name = require_app(app)
    with Platform() as platform:
        found = platform.app_info(name)
    if output.wants_json(json_):
        output.print_json(found.to_dict())
        return
    output.heading(found.name)
    output.key_values(
        [
            ("Created", iso(found.created_at)),
            ("Latest release", f"v{found.latest_release}" if found.latest_release else "none"),
            ("Web URL", found.web_url),
        ]
    )


@apps_app.command("destroy")
def destroy(
    app: AppOpt = None,
    confirm: Annotated[
        str | None,
        typer.Option("--confirm", help="The app's name again, to confirm.", show_default=False),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Destroy an app with its config and releases. Irreversible."""
    from nomadpaas import InvalidInput, Platform

    name = require_app(app)
    if not yes and confirm != name:
        raise InvalidInput(
            f"Destroying {name} is irreversible and needs confirmation."
            if confirm is None
            else f"--confirm {confirm} does not match the app {name}.",
            hint=f"Run `nomadpaas apps destroy -a {name} --confirm {name}`.",
        )
    with Platform() as platform:
        platform.destroy_app(name)
    if output.wants_json(json_):
        output.print_json({"destroyed": name})
        return
    output.note(f"Destroying {name}... done")


def register(app: typer.Typer) -> None:
    """Add `apps` to the root app."""
    app.add_typer(apps_app, name="apps")
