"""Find, select and run classic buildpacks (`bin/detect`, `bin/compile`, `bin/release`).

Selection (reference/buildpacks.md §1.4), first match wins:

1. the ``BUILDPACK_URL`` config var (one buildpack; detection skipped);
2. a ``.buildpacks`` file in the app (one buildpack per line, ``#`` comments);
3. ``buildpacks`` in ``app.json`` (``[{"url": …}, …]``);
4. detection: the first buildpack of DETECTION_ORDER whose `bin/detect` exits 0.

Names resolve to directories under the buildpacks dir (top-level `buildpacks/`):
``python``, ``buildpacks/python``, ``heroku/python`` and URLs ending in
``heroku-buildpack-python`` (optionally ``.git`` and ``#ref``) all mean ``buildpacks/python``.
Nothing is fetched from git: the build machine only reaches PyPI and npm.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping

from nomadpaas.errors import BuildFailed
from nomadpaas.frozen import Frozen, init_fields
from nomadpaas.slugbuilder.spawn import Child, decode_text, kill_group, spawn

__all__ = [
    "DETECTION_ORDER",
    "Buildpack",
    "detect",
    "detect_first",
    "explicit_selection",
    "resolve",
    "run_phase",
]

# Most specific first. `function` precedes the languages because a function app is also a
# Python/Node app; Node precedes Python as on Heroku/herokuish (package.json +
# requirements.txt builds as Node); `procfile` (null) is the catch-all for apps with a Procfile.
DETECTION_ORDER = ("function", "nodejs", "python", "static", "procfile")
DETECT_TIMEOUT_S = 30.0
#: Seconds the first unanswered detect may take before the next one is started anyway.
SPECULATE_AFTER_S = 0.005
#: A buildpack URL's last path component → its name. Compiled when first used (`re`
#: keeps it): only an explicit choice needs it, and compiling costs ~0.3 ms of the task's start.
_URL_NAME_PATTERN = r"(?:heroku-buildpack-|buildpack-)?([A-Za-z0-9_.-]+?)(?:\.git)?$"


class Buildpack(Frozen):
    """One buildpack directory with `bin/detect`, `bin/compile` and maybe `bin/release`."""

    __match_args__ = ("name", "path")
    __slots__ = __match_args__
    name: str
    path: str

    def __init__(self, name: str, path: str | os.PathLike[str]) -> None:
        init_fields(self, name=name, path=os.fspath(path))

    @property
    def export_file(self) -> str:
        return os.path.join(self.path, "export")

    def script(self, phase: str) -> str:
        return os.path.join(self.path, "bin", phase)


def resolve(spec: str, buildpacks_dir: str | os.PathLike[str]) -> Buildpack:
    """Map a buildpack name or URL to a directory under `buildpacks_dir`."""
    cleaned = spec.strip().split("#", 1)[0].rstrip("/")
    last = cleaned.rsplit("/", 1)[-1]
    match = re.fullmatch(_URL_NAME_PATTERN, last)
    name = match.group(1) if match else last
    candidate = os.path.join(buildpacks_dir, name)
    if name and "/" not in name and name not in (".", "..") and os.path.isdir(candidate + "/bin"):
        return Buildpack(name=name, path=candidate)
    available = ", ".join(available_names(buildpacks_dir))
    raise BuildFailed(
        f"Unknown buildpack {spec!r}: only the bundled buildpacks can be used ({available})",
        hint="Set BUILDPACK_URL or .buildpacks to one of those names, or remove it to detect.",
    )


def available_names(buildpacks_dir: str | os.PathLike[str]) -> list[str]:
    root = os.fspath(buildpacks_dir)
    return sorted(
        name
        for name in os.listdir(root)
        if os.path.isfile(os.path.join(root, name, "bin", "compile"))
    )


def explicit_selection(
    build_dir: str | os.PathLike[str],
    env: Mapping[str, str],
    buildpacks_dir: str | os.PathLike[str],
) -> tuple[list[Buildpack], str] | None:
    """Buildpacks chosen by the user, with where the choice came from; None to detect."""
    if env.get("BUILDPACK_URL", "").strip():
        return [resolve(env["BUILDPACK_URL"], buildpacks_dir)], "BUILDPACK_URL"
    dotfile = os.path.join(build_dir, ".buildpacks")
    if os.path.isfile(dotfile):
        with open(dotfile, errors="replace") as f:
            text = f.read()
        specs = [
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
        if specs:
            return [resolve(s, buildpacks_dir) for s in specs], ".buildpacks"
    app_json = os.path.join(build_dir, "app.json")
    if os.path.isfile(app_json):
        try:
            with open(app_json) as f:
                manifest = json.loads(f.read())
        except ValueError as exc:
            raise BuildFailed(f"app.json is not valid JSON: {exc}") from exc
        entries = manifest.get("buildpacks") if isinstance(manifest, dict) else None
        if isinstance(entries, list) and entries:
            specs = [e.get("url", "") if isinstance(e, dict) else str(e) for e in entries]
            return [resolve(s, buildpacks_dir) for s in specs], "app.json"
    return None


def detect(
    buildpack: Buildpack, build_dir: str | os.PathLike[str], env: Mapping[str, str]
) -> str | None:
    """Run `bin/detect`; the framework name it printed, or None when it does not apply
    (or could not be run, or took longer than DETECT_TIMEOUT_S: its tree is killed).

    Output of a failing detect is dropped: it is meant for users who forced the buildpack.
    """
    found = detect_first([buildpack], build_dir, env)
    return found[1] if found is not None else None


def detect_first(
    candidates: list[Buildpack],
    build_dir: str | os.PathLike[str],
    env: Mapping[str, str],
    meanwhile: Callable[[], object] | None = None,
) -> tuple[Buildpack, str] | None:
    """The first of `candidates` whose `bin/detect` passes, with its framework name.

    The answers are taken in order, so the result is the sequential one. A detect is
    started once the ones before it have answered, or sooner when the first unanswered
    one has taken `SPECULATE_AFTER_S` (a slow detect does not hold up the others, and
    several slow ones cost about one wait). Starting every detect at once would cost more
    than it saves: a start is an exec that blocks this process for 1-3 ms, longer than
    our `/bin/sh` detects take to answer, and the detects after the winner are wasted.
    Detects still running once the winner is known are killed. `meanwhile` runs once,
    right after the first detect started, before any answer is read (work for the build
    that would otherwise wait for it).
    """
    started: list[tuple[Buildpack, Child | None, float]] = []
    first = 0  # the first candidate without an answer
    pending = meanwhile
    try:
        while first < len(candidates):
            if first == len(started):  # nothing unanswered is running: start the next
                started.append(_start_detect(candidates[first], build_dir, env))
                if pending is not None:
                    run_now = pending
                    pending = None
                    run_now()
                continue
            buildpack, proc, deadline = started[first]
            if proc is None:  # could not be started: not this buildpack
                first += 1
                continue
            more = len(started) < len(candidates)
            wait = deadline - time.monotonic()
            if more:
                wait = min(wait, SPECULATE_AFTER_S)
            output = proc.communicate(max(wait, 0.0))
            if output is None:  # no answer yet (what it wrote so far is kept)
                if time.monotonic() >= deadline:  # too slow: not this buildpack
                    kill_group(proc.pid)
                    proc.communicate()
                    first += 1
                elif more:  # slow: let the next one run meanwhile
                    started.append(_start_detect(candidates[len(started)], build_dir, env))
                continue
            out = decode_text(output)  # as subprocess's text=True did, whatever the code
            if proc.returncode == 0:
                return buildpack, (out.strip().splitlines()[0] if out.strip() else buildpack.name)
            first += 1
        return None
    finally:
        if pending is not None:
            pending()
        for _, proc, _deadline in started:
            if proc is not None and proc.poll() is None:
                kill_group(proc.pid)
            if proc is not None:
                proc.communicate()


def _start_detect(
    buildpack: Buildpack, build_dir: str | os.PathLike[str], env: Mapping[str, str]
) -> tuple[Buildpack, Child | None, float]:
    """Start `bin/detect` in its own session, stderr to /dev/null (spawn.py):
    (buildpack, process or None, deadline)."""
    try:
        proc: Child | None = spawn(
            [buildpack.script("detect"), os.fspath(build_dir)], dict(env), stderr="devnull"
        )
    except OSError:
        proc = None
    return buildpack, proc, time.monotonic() + DETECT_TIMEOUT_S


def run_phase(
    buildpack: Buildpack,
    phase: str,
    args: list[str],
    *,
    env: Mapping[str, str],
    exports: list[str],
    log: Callable[[str], None] | None,
    timeout_s: float,
) -> tuple[int, list[str]]:
    """Run `bin/<phase>` after sourcing earlier buildpacks' `export` files.

    Streams merged stdout/stderr to `log` line by line (when given) and returns
    (exit code, all output lines). The process gets its own session so a timeout kills
    its whole tree; a timeout raises BuildFailed.
    """
    lines: list[str] = []
    with _start_phase(buildpack.script(phase), args, env, exports) as proc:
        # Reading blocks until the tree closes its output, so the deadline is a timer.
        timed_out = threading.Event()
        timer = threading.Timer(timeout_s, _kill_group, args=(proc.pid, timed_out))
        timer.start()
        try:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                lines.append(line)
                if log is not None:
                    log(line)
            code = proc.wait()
        finally:
            timer.cancel()
    if timed_out.is_set():
        raise BuildFailed(
            f"bin/{phase} of the {buildpack.name} buildpack took longer than {timeout_s:.0f} s "
            "and was killed"
        )
    return code, lines


def _start_phase(script: str, args: list[str], env: Mapping[str, str], exports: list[str]) -> Child:
    """Start `script` with `args` in its own session, after sourcing `exports`.

    Sourcing happens in a bash that then execs the script, so exports reach it. With
    nothing to source, the script is exec'd directly (a bash start less, 1-3 ms of the
    first compile): its environment gets what that bash would have added (PWD; SHLVL,
    0 again after its exec). Should the direct exec fail (no shebang, not executable,
    missing), the bash route runs it, so the outcome and output are bash's as before.
    """

    def start(argv: list[str], phase_env: Mapping[str, str]) -> Child:
        return spawn(argv, dict(phase_env), stderr="stdout")

    if not exports:
        direct = dict(env)
        direct.setdefault("PWD", os.getcwd())
        direct.setdefault("SHLVL", "0")
        try:
            return start([script, *args], direct)
        except OSError:
            pass
    wrapper = 'for f in "${@:2:$1}"; do . "$f"; done; shift $(($1 + 1)); exec "$@"'
    argv = ["bash", "-c", wrapper, "bash", str(len(exports)), *exports]
    return start([*argv, script, *args], env)


def _kill_group(pid: int, timed_out: threading.Event) -> None:
    timed_out.set()
    kill_group(pid)
