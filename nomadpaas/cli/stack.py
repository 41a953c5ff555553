"""`nomadpaas up | down | doctor`: the embedded stack (agent + S3) on this machine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from nomadpaas.cli.options import JsonOpt, TimeoutOpt
from nomadpaas.cli.output import INDENT, STEP, print_json, step, wants_json
from nomadpaas.settings import Settings

if TYPE_CHECKING:  # the stack manager is imported only when a command runs (fast --help)
    from nomadpaas.stack import DoctorReport, StackEvent, StackRecord


def _port_option(flag: str, what: str) -> Any:  # typer.Option is typed as Any
    return typer.Option(
        flag, min=0, max=65535, show_default=False, help=f"{what} port; 0 picks any free one."
    )


def _render_event(event: StackEvent) -> None:
    if event.kind in ("starting", "ready", "stopping", "stale", "warning"):
        step(event.message[0].upper() + event.message[1:])


def _quiet(_: StackEvent) -> None:
    pass


def _summary(record: StackRecord, already: bool) -> None:
    state = "already running (not starting a second copy)" if already else "up"
    typer.echo(f"{STEP}Embedded stack {state}")
    typer.echo(f"{INDENT}Nomad   {record.nomad_addr}  (token in {record.token_file})")
    typer.echo(f"{INDENT}Consul  {record.consul_addr}")
    typer.echo(f"{INDENT}S3      {record.s3_endpoint}  (bucket {record.s3_bucket})")
    typer.echo(f"{INDENT}Home    {record.home}  (logs in {record.home / 'logs'})")
    typer.echo(f'{INDENT}For this shell: eval "$(nomadpaas up --env)"')
    typer.echo("")
    from nomadpaas.stack import shell_exports

    typer.echo(shell_exports(record.env()), nl=False)


def up_command(
    env: Annotated[
        bool,
        typer.Option("--env", help='Print only `export` lines, for eval "$(nomadpaas up --env)".'),
    ] = False,
    nomad_port: Annotated[int | None, _port_option("--nomad-port", "Nomad HTTP")] = None,
    consul_port: Annotated[int | None, _port_option("--consul-port", "Consul HTTP")] = None,
    s3_port: Annotated[int | None, _port_option("--s3-port", "S3")] = None,
    timeout: TimeoutOpt = 60.0,
    json_: JsonOpt = False,
) -> None:
    """Start the embedded stack (agent with ACLs + S3) in the background; print its env.

    Ports: last time's, else 4646 (Nomad), 8500 (Consul), 4649 (S3), else any free one.
    Running twice never starts a second copy. `--json` includes the token.
    """
    from nomadpaas.stack import shell_exports, up

    as_json = wants_json(json_)
    settings = Settings.from_env()
    result = up(
        settings.home,
        nomad_port=nomad_port,
        consul_port=consul_port,
        s3_port=s3_port,
        timeout=timeout,
        on_event=_quiet if as_json else _render_event,
    )
    record = result.record
    if as_json:
        doc = record.to_json()
        doc.update(
            home=str(record.home),
            token=record.token(),
            already_running=result.already_running,
            started=list(result.started),
            env=record.env(),
        )
        print_json(doc)
    elif env:
        typer.echo(shell_exports(record.env()), nl=False)
    else:
        _summary(record, result.already_running)


def down_command(
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.0, help="Seconds between SIGTERM and SIGKILL."),
    ] = 10.0,
    json_: JsonOpt = False,
) -> None:
    """Stop the servers `nomadpaas up` started (only those, by PID); keep their data."""
    from nomadpaas.stack import down

    as_json = wants_json(json_)
    settings = Settings.from_env()
    result = down(settings.home, timeout=timeout, on_event=_quiet if as_json else _render_event)
    if as_json:
        print_json({"stopped": list(result.stopped), "not_running": list(result.not_running)})
    elif result.stopped:
        step(f"Embedded stack stopped; data kept in {settings.home}")
    else:
        step(
            f"Embedded stack is not running in {settings.home}; nothing to stop. "
            "(A stack started with another NOMADPAAS_HOME, as `make demo` does, is stopped "
            "with that NOMADPAAS_HOME set.)"
        )


def _render_report(report: DoctorReport) -> None:
    width = max((len(c.name) for c in report.checks), default=0)
    labels = {"ok": "ok  ", "fail": "FAIL", "info": "info"}
    for check in report.checks:
        typer.echo(f"{labels[check.status]}  {check.name.ljust(width)}  {check.message}")
        if check.hint and check.status != "ok":
            typer.echo(f"      {' ' * width}  -> {check.hint}")


def doctor_command(json_: JsonOpt = False) -> None:
    """Check Nomad, its token, S3 and the bucket; say what is wrong and what to do.

    Exit 0 when every check passes, 6 when something cannot be reached, 1 otherwise.
    """
    from nomadpaas.stack import diagnose

    report = diagnose(Settings.from_env())
    if wants_json(json_):
        print_json([c.to_json() for c in report.checks])
    else:
        _render_report(report)
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    """Add `up`, `down` and `doctor` to the root app."""
    app.command("up")(up_command)
    app.command("down")(down_command)
    app.command("doctor")(doctor_command)
