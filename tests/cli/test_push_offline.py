"""`nomadpaas push` without a cluster: usage errors, rendering, and the push decisions.

The release logic (`nomadpaas.push`) runs over the fake Nomad of tests/unit with a fake
build step; the rendering is fed events by hand. The real build runs in
tests/integration/test_push_cli.py and test_examples_build.py.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from testsupport import free_port, run_main
from unit.fakenomad import FakeNomad

from nomadpaas import Platform, Settings
from nomadpaas.cli.push import Renderer
from nomadpaas.errors import BuildFailed, InvalidInput
from nomadpaas.models import Build, BuildEvent
from nomadpaas.push import describe, formation_for, git_commit

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
SHA = "ab" * 32


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> subprocess.CompletedProcess[str]:
    for name in ("NOMAD_TOKEN", "NOMADPAAS_APP", "NOMADPAAS_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    # Nothing listens there: a command that reached Nomad would fail with exit 6.
    monkeypatch.setenv("NOMAD_ADDR", f"http://127.0.0.1:{free_port()}")
    return run_main(monkeypatch, capsys, args)


# -- usage errors (exit 2) before any request ---------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_bad_path_is_exit_2(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "nope"
    if kind == "file":
        target.write_text("not a directory")
    done = run_cli(monkeypatch, capsys, "push", str(target), "-a", "demo")
    assert done.returncode == 2
    assert str(target) in done.stderr
    assert ("does not exist" if kind == "missing" else "is not a directory") in done.stderr


def test_bad_path_with_json_is_one_result_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_cli(monkeypatch, capsys, "push", str(tmp_path / "nope"), "-a", "demo", "--json")
    assert done.returncode == 2 and done.stderr == ""
    (line,) = done.stdout.splitlines()
    doc = json.loads(line)
    assert doc["event"] == "result" and doc["ok"] is False
    assert doc["exit_code"] == 2 and doc["error"] == "InvalidInput"


def test_no_app_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_cli(monkeypatch, capsys, "push", str(tmp_path))
    assert done.returncode == 2 and "No app given." in done.stderr


def test_nomad_down_is_exit_6(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_cli(monkeypatch, capsys, "push", str(tmp_path), "-a", "demo")
    assert done.returncode == 6, done.stderr
    assert "Traceback" not in done.stderr


# -- rendering ------------------------------------------------------------------------------


def test_text_rendering_puts_build_lines_on_stdout_verbatim(
    capsys: pytest.CaptureFixture[str],
) -> None:
    render = Renderer("demo", as_json=False)
    render(BuildEvent("packed", "Packed 3 files (1.0 KB, sha256 abc)", {"sha256": SHA}))
    render(BuildEvent("upload", "Uploading source (1.0 KB)", {"sent": 0, "total": 1024}))
    render(BuildEvent("upload", "", {"sent": 1024, "total": 1024}))
    render(BuildEvent("uploaded", "Source uploaded"))
    render(BuildEvent("dispatched", "Build b1 dispatched", {"build_id": "b1", "job_id": "j/1"}))
    render(BuildEvent("log", "-----> Python app detected"))
    render(BuildEvent("log", "       \tindented  as is "))
    render(BuildEvent("warning", "careful"))
    render(BuildEvent("finished", "Build succeeded", {"status": "succeeded"}))
    render.close()
    out, err = capsys.readouterr()
    assert out == "-----> Python app detected\n       \tindented  as is \n"
    assert err.splitlines() == [
        "-----> Packed 3 files (1.0 KB, sha256 abc)",
        "-----> Uploading source (1.0 KB)",  # no bar: stderr is not a terminal
        "       Source uploaded",
        "-----> Build b1 dispatched",
        " !     careful",
    ]
    assert (render.build_id, render.job_id) == ("b1", "j/1")
    assert render.unseen(["-----> Python app detected", "crash!"]) == ["crash!"]


def test_json_rendering_is_one_document_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    render = Renderer("demo", as_json=True)
    render(BuildEvent("log", 'a "quoted"\tline'))
    render(BuildEvent("upload", "", {"sent": 5, "total": 10}))
    out, err = capsys.readouterr()
    assert err == ""
    assert [json.loads(line) for line in out.splitlines()] == [
        {"event": "log", "message": 'a "quoted"\tline'},
        {"event": "upload", "message": "", "sent": 5, "total": 10},
    ]


# -- push decisions (library) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("types", "previous", "expected"),
    [
        ({"web": "a"}, None, {"web": 1}),
        ({"web": "a", "worker": "b"}, None, {"web": 1, "worker": 0}),
        ({"worker": "b"}, {}, {"worker": 0}),
        ({"web": "a", "worker": "b"}, {"web": 3, "worker": 2}, {"web": 3, "worker": 2}),
        ({"web": "a"}, {"web": 0, "clock": 1}, {"web": 0}),  # scaled-down web stays down
        ({"web": "a", "clock": "c"}, {"web": 2}, {"clock": 0, "web": 2}),
    ],
)
def test_formation_carries_counts_over(
    types: dict[str, str], previous: dict[str, int] | None, expected: dict[str, int]
) -> None:
    assert formation_for(types, previous) == expected


def test_description_prefers_the_commit() -> None:
    assert describe("0123456789abcdef", SHA) == "Deploy 0123456"
    assert describe("0123456789abcdef-dirty", SHA) == "Deploy 0123456-dirty"
    assert describe(None, SHA) == "Deploy abababa"


def test_git_commit_of_a_work_tree(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "app.py").write_text("print(1)\n")
    subprocess.run([*git, "add", "app.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "app.py").write_text("print(2)\n")
    assert git_commit(tmp_path) == f"{head}-dirty"


class FakeBuilds:
    """Stands in for `Platform.build`: emits `packed` with a chosen digest, then builds."""

    def __init__(self) -> None:
        self.sha = SHA
        self.calls = 0
        self.fail = False

    def __call__(
        self, app: str, path: Path, *, on_event: Callable[[BuildEvent], None], **kwargs: Any
    ) -> Build:
        on_event(BuildEvent("packed", "Packed", {"sha256": self.sha}))
        self.calls += 1
        build = Build(
            app=app,
            build_id=f"b{self.calls}",
            status="pending" if kwargs.get("detach") else "succeeded",
            source_sha256=self.sha,
            source_key=f"sources/{app}/{self.sha}.tar.gz",
            slug_key=f"slugs/{app}/{self.calls:064d}.tar.gz",
            slug_sha256=f"{self.calls:064d}",
            process_types={"web": "python app.py", "worker": "python w.py"},
        )
        if self.fail:
            raise BuildFailed("The build of demo failed")
        return build


@pytest.fixture
def pushing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Platform, FakeBuilds]:
    fake = FakeNomad()
    platform = Platform(Settings(domain="paas.test"), client=fake.client(), clock=lambda: NOW)
    builds = FakeBuilds()
    monkeypatch.setattr(platform, "build", builds)
    platform.create_app("demo")
    return platform, builds


def test_push_records_a_release_from_the_build(
    pushing: tuple[Platform, FakeBuilds], tmp_path: Path
) -> None:
    platform, _ = pushing
    platform.config_set("demo", {"A": "1"})  # v1: config only, no slug
    events: list[BuildEvent] = []

    result = platform.push("demo", tmp_path, on_event=events.append, commit="feedface" * 5)

    assert result.status == "released" and result.release is not None
    release = result.release
    assert release.name == "v2" and release.description == "Deploy feedfac"
    assert result.build is not None and release.slug_key == result.build.slug_key
    assert release.slug_sha256 == result.build.slug_sha256
    assert release.source_digest == SHA and release.config == {"A": "1"}
    assert release.formation == {"web": 1, "worker": 0}
    assert release.created_at == NOW
    assert [e.kind for e in events] == ["packed", "released"]
    assert platform.release_info("demo", 2) == release


def test_same_source_is_unchanged_unless_forced(
    pushing: tuple[Platform, FakeBuilds], tmp_path: Path
) -> None:
    platform, builds = pushing
    first = platform.push("demo", tmp_path)
    platform.config_set("demo", {"A": "1"})  # v2 keeps v1's slug and source digest
    events: list[BuildEvent] = []

    again = platform.push("demo", tmp_path, on_event=events.append)

    assert again.status == "unchanged" and again.build is None
    assert again.release is not None and again.release.name == "v2"
    assert builds.calls == 1  # stopped at `packed`: nothing uploaded or dispatched
    assert [e.kind for e in events] == ["packed", "unchanged"]
    assert len(platform.releases("demo")) == 2

    forced = platform.push("demo", tmp_path, force=True)
    assert forced.status == "released" and forced.release is not None
    assert forced.release.name == "v3" and builds.calls == 2
    builds.sha = "cd" * 32
    changed = platform.push("demo", tmp_path)
    assert changed.release is not None and changed.release.name == "v4"
    assert first.release is not None and first.release.source_digest == SHA


def test_detached_push_records_nothing(
    pushing: tuple[Platform, FakeBuilds], tmp_path: Path
) -> None:
    platform, _ = pushing
    result = platform.push("demo", tmp_path, detach=True)
    assert result.status == "dispatched" and result.release is None
    assert result.build is not None and result.build.status == "pending"
    assert platform.releases("demo") == []


def test_failed_build_records_nothing(pushing: tuple[Platform, FakeBuilds], tmp_path: Path) -> None:
    platform, builds = pushing
    builds.fail = True
    with pytest.raises(BuildFailed):
        platform.push("demo", tmp_path)
    assert platform.releases("demo") == []


def test_push_checks_the_path_before_anything(
    pushing: tuple[Platform, FakeBuilds], tmp_path: Path
) -> None:
    platform, builds = pushing
    with pytest.raises(InvalidInput):
        platform.push("demo", tmp_path / "missing")
    assert builds.calls == 0
