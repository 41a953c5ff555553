"""`nomadpaas push` end to end: the CLI against the real agent and S3 server.

The CLI runs in-process through `nomadpaas.cli.main()` (same argv parsing, rendering
and exit codes as the console script, without an interpreter start per command); the
environment is what a user's shell would export. One agent and one S3 server serve the
module; each test pushes to its own app.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from testsupport import ServerProcess, agent_process, run_main, s3_process

from nomadpaas.agent.drivers.rawexec.driver import kill_orphaned_tasks

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: Variables of the developer's shell that must not leak into these runs.
CLEARED = ("NOMAD_TOKEN", "NOMADPAAS_APP", "NOMAD_NAMESPACE", "NOMADPAAS_DEBUG", "AWS_PROFILE")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One agent + S3 for the module; yields the environment a user would export."""
    root = tmp_path_factory.mktemp("push")
    agent = agent_process(root / "agent", log_path=root / "agent.log")
    s3 = s3_process(root / "s3", log_path=root / "s3.log")
    s3.start()
    try:
        agent.start()
        try:
            if httpx.get(f"{agent.url}/v1/jobs", timeout=30).status_code == 404:
                pytest.skip("the embedded agent has no jobs API yet (/v1/jobs answered 404)")
            yield {
                "NOMAD_ADDR": agent.url,
                "NOMADPAAS_S3_ENDPOINT": s3.url,
                "NOMADPAAS_HOME": str(root / "home"),
                "AWS_ACCESS_KEY_ID": "k",
                "AWS_SECRET_ACCESS_KEY": "s",
                "AWS_REGION": "us-east-1",
            }
        finally:
            _stop(agent)
    finally:
        s3.kill()


def _stop(agent: ServerProcess) -> None:
    agent.kill()
    kill_orphaned_tasks(str(agent.data_dir))


@pytest.fixture
def cli(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        for name in CLEARED:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return run_main(monkeypatch, capsys, args)

    return run


def _copy(example: str, tmp_path: Path) -> str:
    shutil.copytree(EXAMPLES / example, tmp_path / example)
    return str(tmp_path / example)


def _ndjson(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line is one JSON document (the --json contract)."""
    return [json.loads(line) for line in stdout.splitlines()]


def test_push_streams_the_build_and_records_a_release(cli: Any, tmp_path: Path) -> None:
    assert cli("apps", "create", "web1").returncode == 0
    source = _copy("flask", tmp_path)

    done = cli("push", source, "-a", "web1")

    assert done.returncode == 0, done.stderr
    # The build's own lines, verbatim, on stdout; our steps on stderr.
    assert "-----> Python app detected\n" in done.stdout
    assert "Procfile declares types     -> web" in done.stdout
    assert "-----> Releasing web1..." in done.stderr
    assert "Released v1 (Deploy " in done.stderr
    assert "Release v1 created; running it comes with the deploy step" in done.stderr

    info = cli("releases", "info", "v1", "-a", "web1", "--json")
    release = json.loads(info.stdout)
    assert release["process_types"] == {"web": "python app.py"}
    assert release["slug_key"].startswith("slugs/web1/") and release["slug_sha256"]
    assert release["description"] == f"Deploy {release['source_digest'][:7]}"

    again = cli("push", source, "-a", "web1")
    assert again.returncode == 0
    assert "Source identical to v1's" in again.stderr and "--force" in again.stderr
    assert again.stdout == ""  # nothing was built
    listed = json.loads(cli("releases", "-a", "web1", "--json").stdout)
    assert [r["name"] for r in listed] == ["v1"]


def test_json_push_is_ndjson_ending_in_a_result(cli: Any, tmp_path: Path) -> None:
    cli("apps", "create", "json1")
    source = _copy("shell-worker", tmp_path)

    done = cli("push", source, "-a", "json1", "--json")

    assert done.returncode == 0 and done.stderr == ""
    events = _ndjson(done.stdout)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "packed" and kinds[-1] == "result"
    assert {"dispatched", "allocated", "log", "finished", "released"} <= set(kinds)
    result = events[-1]
    assert result["ok"] is True and result["exit_code"] == 0
    assert result["status"] == "released" and result["deployed"] is False
    assert result["release"]["name"] == "v1"
    assert set(result["release"]["process_types"]) == {"web", "worker"}
    assert result["build"]["build_id"] == events[kinds.index("dispatched")]["build_id"]

    forced = _ndjson(cli("push", source, "-a", "json1", "--json", "--force").stdout)
    assert forced[-1]["release"]["name"] == "v2"
    unchanged = _ndjson(cli("push", source, "-a", "json1", "--json").stdout)
    assert [e["event"] for e in unchanged] == ["packed", "unchanged", "result"]
    assert unchanged[-1]["status"] == "unchanged" and unchanged[-1]["release"]["name"] == "v2"


def test_failed_build_is_exit_3_and_says_it_once(cli: Any, tmp_path: Path) -> None:
    cli("apps", "create", "bad1")
    source = _copy("fail-bad-requirements", tmp_path)

    done = cli("push", source, "-a", "bad1")

    assert done.returncode == 3
    both = done.stdout + done.stderr
    assert "The build of bad1 failed at step 'Installing dependencies" in done.stderr
    # uv's error streamed live once, and not repeated after the stream.
    assert both.count("nomadpaas-this-package-does-not-exist was not found") == 1
    assert "Read the build output above" in done.stderr
    assert "Traceback" not in both
    assert json.loads(cli("releases", "-a", "bad1", "--json").stdout) == []

    as_json = cli("push", source, "-a", "bad1", "--json")
    assert as_json.returncode == 3
    result = _ndjson(as_json.stdout)[-1]
    assert result["event"] == "result" and result["ok"] is False
    assert result["exit_code"] == 3 and result["error"] == "BuildJobFailed"
    assert any("not found" in line for line in result["build"]["log_tail"])


def test_timeout_is_exit_5_and_the_build_goes_on(cli: Any, tmp_path: Path) -> None:
    cli("apps", "create", "slow1")
    done = cli("push", _copy("fastapi", tmp_path), "-a", "slow1", "--timeout", "0")

    assert done.returncode == 5, done.stderr
    assert "goes on in Nomad" in done.stderr
    build_id = done.stderr.split("-----> Build ", 1)[1].split(" ", 1)[0]
    assert f"Stopped waiting for build {build_id} of slow1" in done.stderr


def test_detach_dispatches_and_says_how_to_follow(cli: Any, tmp_path: Path) -> None:
    cli("apps", "create", "det1")
    done = cli("push", _copy("static-site", tmp_path), "-a", "det1", "--detach")

    assert done.returncode == 0, done.stderr
    assert "goes on in Nomad (--detach: not waiting)" in done.stderr
    assert "nomad alloc logs -f -job nomadpaas-build/dispatch-" in done.stderr
    assert "records no release" in done.stderr
    assert json.loads(cli("releases", "-a", "det1", "--json").stdout) == []

    as_json = _ndjson(
        cli("push", _copy("flask", tmp_path), "-a", "det1", "--detach", "--json").stdout
    )
    assert as_json[-1]["status"] == "dispatched" and as_json[-1]["build"]["status"] == "pending"


def test_unknown_app_is_exit_1_with_the_create_hint(cli: Any, tmp_path: Path) -> None:
    done = cli("push", _copy("flask", tmp_path), "-a", "ghost")
    assert done.returncode == 1
    assert "App ghost does not exist." in done.stderr
    assert "nomadpaas apps create ghost" in done.stderr
    assert done.stdout == ""
