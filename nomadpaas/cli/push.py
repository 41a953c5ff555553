"""`nomadpaas push [PATH] -a APP`: build the source on Nomad and record release v<N>.

Text output is Heroku's: our own steps (`-----> `) on stderr, the build's own lines
verbatim on stdout as the build task prints them, an upload bar on stderr only when
stderr is a terminal. With `--json`, stdout is NDJSON so CI can stream it: one JSON
document per line per event (`{"event": "log", "message": "…"}`, `packed`, `upload`,
`dispatched`, …, see `nomadpaas.models.BuildEvent`), then exactly one last line
`{"event": "result", "ok": …, "exit_code": …}` holding the push result (status,
build, release) or the error (message, hint, build with its log tail).

Exit codes: 0 released / unchanged / detached · 1 no such app · 2 bad PATH ·
3 build failed · 5 timed out (the build goes on in Nomad) · 6 Nomad or S3 unreachable.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nomadpaas.cli import output
from nomadpaas.cli.options import AppOpt, DetachOpt, JsonOpt, require_app

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from nomadpaas.errors import NomadPaasError
    from nomadpaas.models import BuildEvent, PushResult

#: Default wait for the build: the build job's 20-minute run limit plus queueing.
DEFAULT_TIMEOUT_S = 30 * 60.0
#: Build lines remembered as shown, so a failure does not print them a second time.
SHOWN_LINES = 200
#: What a push does not do yet (DESIGN.md §4: the app job comes with the deploy step).
NOT_DEPLOYED = "running it comes with the deploy step (not built yet)"

_TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        min=0.0,
        help="Seconds to wait for the build (exit 5 after; the build goes on in Nomad).",
    ),
]


def emit_json(doc: dict[str, Any]) -> None:
    """One compact JSON document on one stdout line (NDJSON), flushed at once."""
    sys.stdout.write(json.dumps(doc, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


class Renderer:
    """Turns push events into terminal output (or NDJSON lines)."""

    def __init__(self, app: str, as_json: bool) -> None:
        self.app = app
        self.as_json = as_json
        self.shown: collections.deque[str] = collections.deque(maxlen=SHOWN_LINES)
        self.job_id: str | None = None
        self.build_id: str | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, event: BuildEvent) -> None:
        if event.kind == "dispatched":
            self.job_id = str(event.data.get("job_id") or "") or None
            self.build_id = str(event.data.get("build_id") or "") or None
        if self.as_json:
            emit_json(event.to_dict())
            return
        if event.kind == "log":
            self.shown.append(event.message)
            sys.stdout.write(event.message + "\n")
            sys.stdout.flush()
        elif event.kind == "upload":
            self._upload(event)
        elif event.kind == "uploaded":
            self.close()
            output.detail(event.message)
        elif event.kind == "warning":
            typer.echo(f" !     {event.message}", err=True)
        elif event.kind in ("packed", "dispatched", "unchanged"):
            output.step(event.message)
        elif event.kind in ("source-exists", "job-registered", "job-current", "allocated"):
            output.detail(event.message)
        # finished / released: the result or the error says it once, after the stream.

    def _upload(self, event: BuildEvent) -> None:
        total = int(event.data.get("total") or 0)
        sent = int(event.data.get("sent") or 0)
        if event.message:
            output.step(event.message)
            self._start_progress(total)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=sent, total=total)

    def _start_progress(self, total: int) -> None:
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:
            return  # a transient bar off a terminal leaves a stray line (tooling.md §6)
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn(output.INDENT),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("upload", total=total)

    def close(self) -> None:
        """Stop the upload bar if it runs (on success and on any error)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None

    def unseen(self, lines: tuple[str, ...] | list[str]) -> list[str]:
        """The tail lines that the live stream did not show (a crash's stderr, say)."""
        shown = set(self.shown)
        return [line for line in lines if line not in shown]


def _render_result(result: PushResult, renderer: Renderer) -> None:
    release = result.release
    if result.status == "unchanged":
        output.detail("Push with --force to build and release the same source again.")
        return
    if result.status == "dispatched":
        build = result.build
        build_id = build.build_id if build else renderer.build_id
        job_id = build.job_id if build else renderer.job_id
        output.step(f"Build {build_id} goes on in Nomad (--detach: not waiting)")
        output.detail(f"Follow it:  nomad alloc logs -f -job {job_id} build")
        output.detail("A detached push records no release: push again without --detach")
        output.detail("to release it (the build cache makes that rebuild quick).")
        return
    assert release is not None
    output.step(f"Releasing {result.app}...")
    output.detail(f"Process types: {', '.join(sorted(release.process_types)) or 'none'}")
    output.detail(f"Released {release.name} ({release.description})")
    output.detail(f"Release {release.name} created; {NOT_DEPLOYED}.")


def _result_doc(result: PushResult) -> dict[str, Any]:
    doc: dict[str, Any] = {"event": "result", "ok": True, "exit_code": 0, **result.to_dict()}
    doc["deployed"] = False
    if result.status == "released" and result.release is not None:
        doc["message"] = f"Release {result.release.name} created; {NOT_DEPLOYED}"
    elif result.status == "unchanged":
        doc["message"] = "Source unchanged since the latest release; nothing built or released"
    else:
        doc["message"] = "Build dispatched; it goes on in Nomad (no release recorded)"
    return doc


def _render_failure(err: NomadPaasError, renderer: Renderer) -> None:
    """Text mode: the tail lines the stream did not show; main() prints message + hint."""
    tail = getattr(err, "log_tail", None)
    if not tail:
        return
    missing = renderer.unseen(list(tail))
    if missing:
        output.detail("Last lines of the build (not shown above):")
        for line in missing:
            typer.echo(f"{output.INDENT}{line}", err=True)


def push(
    path: Annotated[
        Path, typer.Argument(help="The app's source directory.", show_default=True)
    ] = Path("."),
    app: AppOpt = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Build and release even if the source is unchanged."),
    ] = False,
    timeout: _TimeoutOpt = DEFAULT_TIMEOUT_S,
    detach: DetachOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Build the source at PATH into a slug on Nomad and record the app's next release.

    A source identical to the latest release's makes no new release unless --force.

    With --json: one JSON event per line, then one `{"event": "result", …}` line.
    """
    from nomadpaas import NomadPaasError, Platform

    as_json = output.wants_json(json_)
    renderer = Renderer(app or "", as_json)
    try:
        name = require_app(app)
        renderer.app = name
        with Platform() as platform:
            try:
                result = platform.push(
                    name, path, on_event=renderer, timeout=timeout, detach=detach, force=force
                )
            finally:
                renderer.close()
    except NomadPaasError as err:
        if not as_json:
            _render_failure(err, renderer)
            raise
        emit_json({"event": "result", "ok": False, **err.to_dict()})
        raise typer.Exit(err.exit_code) from None
    if as_json:
        emit_json(_result_doc(result))
    else:
        _render_result(result, renderer)


def register(app: typer.Typer) -> None:
    """Add `push` to the root app."""
    app.command("push")(push)
