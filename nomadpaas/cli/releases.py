"""`nomadpaas releases [list] | info [vN]`: the release ledger, newest first.

`-a/--app` and `--json` are accepted on the group too (`nomadpaas releases -a demo --json`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from nomadpaas.cli import output
from nomadpaas.cli.options import AppOpt, JsonOpt, require_app
from nomadpaas.models import iso

if TYPE_CHECKING:
    from nomadpaas.models import Release

releases_app = typer.Typer(
    help="Show an app's releases (bare `releases` lists them).",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _resolve(ctx: typer.Context, app: str | None, json_: bool) -> tuple[str, bool]:
    params = ctx.parent.params if ctx.parent is not None else {}
    group_app, group_json = params.get("app"), bool(params.get("json_"))
    return require_app(app or group_app), output.wants_json(json_ or group_json)


def _list(app: str, as_json: bool) -> None:
    from nomadpaas import Platform

    with Platform() as platform:
        releases = platform.releases(app)
    if as_json:
        output.print_json([r.to_dict() for r in releases])
        return
    if not releases:
        typer.echo(f"{app} has no releases yet.")
        return
    output.heading(f"{app} Releases - Current: {releases[0].name}")
    output.table(
        ["version", "description", "status", "created"],
        [[r.name, r.description, r.status, iso(r.created_at)] for r in releases],
    )


def _render_info(release: Release) -> None:
    output.heading(f"Release {release.name}")
    rows: list[tuple[str, object]] = [
        ("Description", release.description),
        ("Status", release.status),
        ("Created", iso(release.created_at)),
        ("Slug", release.slug_key or "none (no build yet)"),
    ]
    if release.slug_sha256:
        rows.append(("Slug sha256", release.slug_sha256))
    if release.source_digest:
        rows.append(("Source sha256", release.source_digest))
    rows += [
        ("Config vars", ", ".join(sorted(release.config)) or "none"),
        (
            "Processes",
            ", ".join(f"{p}={n}" for p, n in sorted(release.formation.items())) or "none",
        ),
    ]
    output.key_values(rows)


@releases_app.callback()
def _releases(ctx: typer.Context, app: AppOpt = None, json_: JsonOpt = False) -> None:
    if ctx.invoked_subcommand is None:
        _list(require_app(app), output.wants_json(json_))


@releases_app.command("list")
def list_(ctx: typer.Context, app: AppOpt = None, json_: JsonOpt = False) -> None:
    """List the app's releases, newest first."""
    _list(*_resolve(ctx, app, json_))


@releases_app.command("info")
def info(
    ctx: typer.Context,
    version: Annotated[
        str | None, typer.Argument(help="The release, like v3 or 3 (default: the newest).")
    ] = None,
    app: AppOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Show one release: description, slug, config var names, formation."""
    from nomadpaas import NotFound, Platform

    name, as_json = _resolve(ctx, app, json_)
    with Platform() as platform:
        if version is None:
            found = platform.releases(name)
            if not found:
                raise NotFound(f"{name} has no releases yet.")
            release = found[0]
        else:
            release = platform.release_info(name, version)
    if as_json:
        output.print_json(release.to_dict())
    else:
        _render_info(release)


def register(app: typer.Typer) -> None:
    """Add `releases` to the root app."""
    app.add_typer(releases_app, name="releases")
