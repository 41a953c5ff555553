"""Every app in examples/ pushed through the embedded agent and the real S3 server.

Issue 5's done-when: each example builds into a slug and a release with the right
process types, and each failing example fails with a message that says why. One agent
and one S3 server serve the whole module (a cold start per test would cost more than
most builds), so each test uses its own app.

What fails where (examples/README.md): a bad requirements file and a bad Procfile fail
the build; an app with no process types at all fails the build; an app without `web`
but with another process type is valid (worker-only apps exist), so a missing web
process is the deploy step's concern, not the build's; an app that crashes on boot
builds fine and fails only when it starts.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from testsupport import ServerProcess, agent_process, bucket_storage, s3_process

from nomadpaas import Platform, Settings
from nomadpaas.agent.drivers.rawexec.driver import kill_orphaned_tasks
from nomadpaas.build import BuildJobFailed
from nomadpaas.models import BuildEvent, PushResult

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: A cold build installs from PyPI or npm; generous for a loaded 2-core machine.
BUILD_TIMEOUT_S = 240.0
#: The python buildpack's line when the dependency install is skipped.
CACHE_HIT = "skipping the install (cache hit)"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """One agent and one S3 server for the module; tasks killed after the agent."""
    root = tmp_path_factory.mktemp("examples")
    agent = agent_process(root / "agent", log_path=root / "agent.log")
    s3 = s3_process(root / "s3", log_path=root / "s3.log")
    s3.start()
    try:
        agent.start()
        try:
            yield agent, s3.url
        finally:
            agent.kill()
            kill_orphaned_tasks(str(agent.data_dir))
    finally:
        s3.kill()


@pytest.fixture(scope="module")
def platform(
    servers: tuple[ServerProcess, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    agent, s3_url = servers
    if httpx.get(f"{agent.url}/v1/jobs", timeout=30).status_code == 404:
        pytest.skip("the embedded agent has no jobs API yet (/v1/jobs answered 404)")
    storage = bucket_storage(s3_url)
    home = tmp_path_factory.mktemp("home")
    settings = Settings(nomad_addr=agent.url, s3_endpoint=s3_url, home=home)
    with Platform(settings, storage=storage) as platform:
        yield platform


def _source(example: str, tmp_path: Path) -> Path:
    """A copy outside the git repo, so releases are labelled by the source digest."""
    source = tmp_path / example
    shutil.copytree(EXAMPLES / example, source)
    return source


def _push(
    platform: Platform, example: str, tmp_path: Path, app: str | None = None
) -> tuple[PushResult, list[str]]:
    app = app or example
    platform.create_app(app)
    lines: list[str] = []

    def collect(event: BuildEvent) -> None:
        if event.kind == "log":
            lines.append(event.message)

    result = platform.push(
        app,
        _source(example, tmp_path),
        on_event=collect,
        timeout=BUILD_TIMEOUT_S,
    )
    return result, lines


def _wait_for_build_tasks_to_exit(platform: Platform, timeout_s: float = 60.0) -> None:
    """Until every dispatched build job is dead (its task has saved the cache and exited)."""
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = platform.nomad.get("/v1/jobs", {"prefix": "nomadpaas-build/"}).data
        if all(job["Status"] == "dead" for job in jobs):
            return
        assert time.monotonic() < deadline, f"build tasks still running after {timeout_s}s"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("example", "types", "buildpack"),
    [
        ("flask", {"web": "python app.py"}, "Python"),
        ("fastapi", {"web": "uvicorn main:app --host ${HOST:-127.0.0.1} --port $PORT"}, "Python"),
        ("express", {"web": "npm start"}, "Node.js"),  # no Procfile: the buildpack default
        ("python-function", {"web": "functions-framework"}, "function"),
        ("node-function", {"web": "functions-framework"}, "function"),
        ("static-site", {"web": "python3 .static-server/server.py"}, "Static"),
        ("shell-worker", {"worker": "bash worker.sh", "web": "python3 -m http.server"}, None),
        ("fail-crash-on-boot", {"web": "python3 app.py"}, None),  # fails at start, not here
    ],
)
def test_example_builds_into_a_release(
    platform: Platform,
    tmp_path: Path,
    example: str,
    types: dict[str, str],
    buildpack: str | None,
) -> None:
    result, lines = _push(platform, example, tmp_path)

    assert result.status == "released", lines
    release, build = result.release, result.build
    assert release is not None and build is not None
    assert release.name == "v1" and release.slug_key == build.slug_key
    assert release.slug_sha256 == build.slug_sha256 and release.source_digest
    assert release.description == f"Deploy {release.source_digest[:7]}"
    assert set(release.process_types) == set(types), release.process_types
    for name, command in types.items():
        # Commands a buildpack writes carry flags (`--target …`): check how they start.
        assert release.process_types[name].startswith(command), release.process_types
    assert release.formation == {name: int(name == "web") for name in types}
    if buildpack is not None:
        assert build.buildpack and buildpack.lower() in build.buildpack.lower()
    assert any("Compiled slug size" in line for line in lines)
    assert platform.releases(release.app)[0] == release


@pytest.mark.parametrize(
    ("example", "step", "why"),
    [
        # uv's resolver error names the package that does not exist.
        ("fail-bad-requirements", "Installing dependencies", "nomadpaas-this-package-does-not"),
        # Every bad Procfile line, with its line number.
        ("fail-bad-procfile", None, "line 2: expected `name: command`"),
        ("fail-no-web", "Discovering process types", "No process types: there is no Procfile"),
    ],
)
def test_failing_example_says_why(
    platform: Platform, tmp_path: Path, example: str, step: str | None, why: str
) -> None:
    with pytest.raises(BuildJobFailed) as info:
        _push(platform, example, tmp_path)

    err = info.value
    assert err.exit_code == 3
    said = "\n".join([err.message, *err.log_tail])
    assert why in said, said
    if step is not None:
        assert err.build.step and err.build.step.startswith(step), err.build.step
    assert platform.releases(err.build.app) == []  # a failed build makes no release


def test_procfile_errors_name_every_bad_line(platform: Platform, tmp_path: Path) -> None:
    platform.create_app("procfile-lines")
    with pytest.raises(BuildJobFailed) as info:
        platform.push(
            "procfile-lines", _source("fail-bad-procfile", tmp_path), timeout=BUILD_TIMEOUT_S
        )
    message = info.value.message
    for number in (2, 4, 6):
        assert f"line {number}:" in message
    assert "process type 'worker' is defined twice (first on line 3)" in message


def test_unchanged_push_makes_no_release_and_a_forced_one_hits_the_cache(
    platform: Platform, tmp_path: Path
) -> None:
    first, cold = _push(platform, "flask", tmp_path / "a", app="unchanged")
    app = first.app
    assert first.release is not None and not any(CACHE_HIT in line for line in cold)
    _wait_for_build_tasks_to_exit(platform)  # the cache is saved after the result

    events: list[BuildEvent] = []
    again = platform.push(app, tmp_path / "a" / "flask", on_event=events.append)
    assert again.status == "unchanged" and again.build is None
    assert again.release == first.release
    kinds = [e.kind for e in events]
    assert kinds == ["packed", "unchanged"]  # nothing uploaded, nothing dispatched
    assert [r.name for r in platform.releases(app)] == ["v1"]

    events.clear()
    forced = platform.push(
        app, tmp_path / "a" / "flask", on_event=events.append, force=True, timeout=BUILD_TIMEOUT_S
    )
    warm = [e.message for e in events if e.kind == "log"]
    assert forced.status == "released" and forced.release is not None
    assert forced.release.name == "v2"
    assert any(CACHE_HIT in line for line in warm), warm
    assert not any("Installed" in line and "packages" in line for line in warm)
    assert forced.release.source_digest == first.release.source_digest


def test_code_only_change_rebuilds_from_the_cache(platform: Platform, tmp_path: Path) -> None:
    first, _ = _push(platform, "flask", tmp_path, app="code-change")
    assert first.release is not None
    # The build task saves the cache after the result (off the push's path); without a
    # node-local cache slot to wait on, a push made during that save builds without it.
    _wait_for_build_tasks_to_exit(platform)
    app_py = tmp_path / "flask" / "app.py"
    app_py.write_text(app_py.read_text() + "\n# a code-only change\n")
    events: list[BuildEvent] = []

    second = platform.push(first.app, tmp_path / "flask", on_event=events.append)

    assert second.status == "released" and second.release is not None
    assert second.release.name == "v2"
    assert second.release.source_digest != first.release.source_digest
    assert any(CACHE_HIT in e.message for e in events if e.kind == "log")
