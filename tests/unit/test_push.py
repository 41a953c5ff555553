"""push over a fake Nomad with a scripted build: the release number is taken while the
build's slug is promoted (once the task printed its success line), only the release's
own write is left after the build, and a build that fails after that line leaves a gap
in the numbers, never a duplicate nor a release; every thread is joined."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from unit.fakenomad import FakeNomad

from nomadpaas import apps, releases
from nomadpaas.build import SUCCEEDED_LINE
from nomadpaas.errors import BuildFailed, NotFound
from nomadpaas.models import Build, BuildEvent, Release
from nomadpaas.nomad.variables import Variables
from nomadpaas.push import git_commit, push

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
RELEASE_V1 = ("PUT", "/v1/var/nomadpaas/apps/demo/releases/v1")
APP = "/v1/var/nomadpaas/apps/demo"


#: How a build says it succeeded: the task's result line (`built`, while the task stores
#: its record), or an older task's DONE line after the record's store.
SIGNALS = {
    "built": BuildEvent("built", "Slug built", {"sha256": "cd" * 32, "bytes": 1}),
    "done line": BuildEvent("log", SUCCEEDED_LINE, {}),
}


def scripted_build(fake: FakeNomad, *, fail: bool = False, signal: str = "built") -> Any:
    """A `Platform.build` stand-in: says the build succeeded (`signal`), then (like the
    real one, promoting the slug) waits until the release number has been taken on the
    side, and returns a succeeded build (or fails its slug check)."""

    def build(app: str, source: Path, **kwargs: Any) -> Build:
        on_event = kwargs["on_event"]
        bumps = fake.requests.count(("PUT", APP))  # the app's creation wrote it too
        on_event(BuildEvent("packed", "", {"sha256": "ab" * 32}))
        on_event(SIGNALS[signal])
        deadline = time.monotonic() + 10
        while fake.requests.count(("PUT", APP)) == bumps:
            # The promotion (and the record's store) take a moment: the number is
            # taken meanwhile, on the signal, not on a later line.
            assert time.monotonic() < deadline, f"no release number taken on {signal}"
            time.sleep(0.005)
        if signal == "built":
            on_event(BuildEvent("log", SUCCEEDED_LINE, {}))  # once the record is stored
        fake.requests.append(("BUILD", "returned"))
        if fail:
            raise BuildFailed("The uploaded slug's MD5 is … : the slug was corrupted.")
        return Build(app=app, build_id="b1", status="succeeded", source_sha256="ab" * 32,
                     source_key="sources/demo/ab.tar.gz", slug_key="slugs/demo/cd.tar.gz",
                     slug_sha256="cd" * 32, process_types={"web": "python app.py"})  # fmt: skip

    return build


@pytest.fixture
def setup(tmp_path: Path) -> tuple[FakeNomad, Variables, Path]:
    fake = FakeNomad()
    store = Variables(fake.client())
    apps.create(store, "demo", NOW)
    return fake, store, tmp_path


def push_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("nomadpaas-")]


@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_only_the_release_write_is_left_once_the_build_returns(
    setup: tuple[FakeNomad, Variables, Path], signal: str
) -> None:
    fake, store, source = setup
    scripted = scripted_build(fake, signal=signal)
    result = push(store, scripted, "demo", source, lambda: NOW, commit="c0ffee1")
    assert result.status == "released" and result.release is not None
    assert result.release.version == 1 and result.release.slug_key == "slugs/demo/cd.tar.gz"
    after = fake.requests[fake.requests.index(("BUILD", "returned")) + 1 :]
    assert after == [RELEASE_V1]
    assert releases.get(store, "demo", 1).description == "Deploy c0ffee1"
    assert push_threads() == []


def test_a_build_failing_after_its_success_line_leaves_a_gap_not_a_release(
    setup: tuple[FakeNomad, Variables, Path],
) -> None:
    fake, store, source = setup
    with pytest.raises(BuildFailed):
        push(store, scripted_build(fake, fail=True), "demo", source, lambda: NOW, commit="c1")
    assert RELEASE_V1 not in fake.requests and releases.list_releases(store, "demo") == []
    assert push_threads() == []
    fake.requests.clear()
    again = push(store, scripted_build(fake), "demo", source, lambda: NOW, commit="c2")
    assert again.release is not None and again.release.version == 2  # v1 is the gap
    assert [r.version for r in releases.list_releases(store, "demo")] == [2]
    assert releases.latest(store, "demo") == again.release


def test_push_reads_each_app_variable_once_and_hands_the_config_to_the_build(
    setup: tuple[FakeNomad, Variables, Path],
) -> None:
    fake, store, source = setup
    store.put("nomadpaas/apps/demo/config", {"GREETING": "hi"})
    seen: dict[str, Any] = {}
    scripted = scripted_build(fake)

    def build(app: str, path: Path, **kwargs: Any) -> Build:
        seen.update(kwargs)
        return scripted(app, path, **kwargs)

    fake.requests.clear()
    push(store, build, "demo", source, lambda: NOW, commit="c1")
    assert seen["config_vars"] == {"GREETING": "hi"}
    reads = [path for method, path in fake.requests if method == "GET"]
    # The record, then the config, once each: that read, taken after the record's, is
    # the release's snapshot, as nobody took a number since (releases.reserve).
    assert reads == [APP, f"{APP}/config"]
    assert releases.get(store, "demo", 1).config == {"GREETING": "hi"}
    assert push_threads() == []


def test_a_config_set_during_the_build_is_in_the_release_it_precedes(
    setup: tuple[FakeNomad, Variables, Path],
) -> None:
    fake, store, source = setup
    store.put("nomadpaas/apps/demo/config", {"GREETING": "hi"})
    scripted = scripted_build(fake)

    def build(app: str, path: Path, **kwargs: Any) -> Build:
        # `config set` while the task builds: its write, its number (v1), its release.
        store.put("nomadpaas/apps/demo/config", {"GREETING": "hello"})
        releases.create(store, Release(app="demo", version=0, description="Set GREETING",
                                       created_at=NOW))  # fmt: skip
        return scripted(app, path, **kwargs)

    result = push(store, build, "demo", source, lambda: NOW, commit="c1")
    assert result.release is not None and result.release.version == 2
    # The newest release has the newest config, though the build was given the older.
    assert result.release.config == {"GREETING": "hello"}
    assert push_threads() == []


def test_push_of_an_unknown_app_is_not_found_before_any_build(
    setup: tuple[FakeNomad, Variables, Path],
) -> None:
    _, store, source = setup
    calls: list[str] = []

    def build(app: str, path: Path, **kwargs: Any) -> Build:
        calls.append(app)
        raise AssertionError("no build for an unknown app")

    with pytest.raises(NotFound):
        push(store, build, "ghost", source, lambda: NOW, commit="c1")
    assert calls == [] and push_threads() == []


def test_push_labels_the_release_with_the_git_commit_it_looked_up(
    setup: tuple[FakeNomad, Variables, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, store, source = setup
    looked: list[Path] = []

    def fake_git(path: Path) -> str:
        looked.append(path)
        return "feedbeef" * 5 + "-dirty"

    monkeypatch.setattr("nomadpaas.push.git_commit", fake_git)
    monkeypatch.setattr("nomadpaas.push._may_be_in_repository", lambda path: True)
    result = push(store, scripted_build(fake), "demo", source, lambda: NOW)
    assert looked == [source]
    assert result.release is not None and result.release.description == "Deploy feedbee-dirty"


def _git(repo: Path, *args: str) -> str:
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    done = subprocess.run(
        ["git", "-C", str(repo), *ident, *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def test_no_git_is_started_for_a_directory_no_repository_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if any(os.path.lexists(d / ".git") for d in (tmp_path, *tmp_path.parents)):
        pytest.skip("the temporary directory is inside a git repository")
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_WORK_TREE", raising=False)
    started: list[object] = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: started.append(a))
    assert git_commit(tmp_path) is None
    assert started == []


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_of_a_subdirectory_before_and_after_commits(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    app = tmp_path / "services" / "web"
    app.mkdir(parents=True)
    (app / "app.py").write_text("print(1)\n")
    assert git_commit(app) is None  # a repository without a commit yet
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert git_commit(app) == head
    (tmp_path / "elsewhere.txt").write_text("outside the pushed directory\n")
    assert git_commit(app) == head  # changes outside the directory do not count
    (app / "new.py").write_text("print(2)\n")  # untracked inside it does
    assert git_commit(app) == f"{head}-dirty"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_follows_git_dir_and_bare_repositories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    _git(work, "init", "-q")
    (work / "app.py").write_text("print(1)\n")
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "first")
    head = _git(work, "rev-parse", "HEAD")
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    assert git_commit(bare) == head  # no work tree: the commit, never "-dirty"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("GIT_DIR", str(work / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(work))
    assert git_commit(elsewhere) is not None  # git is asked, though no .git is above
