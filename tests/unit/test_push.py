"""push over a fake Nomad with a scripted build: the release number is taken while the
build's slug is promoted (once the task printed its success line), only the release's
own write is left after the build, and a build that fails after that line leaves a gap
in the numbers, never a duplicate nor a release; every thread is joined."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from unit.fakenomad import FakeNomad

from nomadpaas import apps, releases
from nomadpaas.build import SUCCEEDED_LINE
from nomadpaas.errors import BuildFailed
from nomadpaas.models import Build, BuildEvent
from nomadpaas.nomad.variables import Variables
from nomadpaas.push import push

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
RELEASE_V1 = ("PUT", "/v1/var/nomadpaas/apps/demo/releases/v1")
APP = "/v1/var/nomadpaas/apps/demo"


def scripted_build(fake: FakeNomad, *, fail: bool = False) -> Any:
    """A `Platform.build` stand-in: prints the task's success line, then (like the real
    one, reading the record and promoting the slug) waits until the release number has
    been taken on the side, and returns a succeeded build (or fails its slug check)."""

    def build(app: str, source: Path, **kwargs: Any) -> Build:
        on_event = kwargs["on_event"]
        on_event(BuildEvent("packed", "", {"sha256": "ab" * 32}))
        on_event(BuildEvent("log", SUCCEEDED_LINE, {}))
        deadline = time.monotonic() + 30
        while ("PUT", APP) not in fake.requests and time.monotonic() < deadline:
            time.sleep(0.005)  # the promotion takes a moment: the number is taken meanwhile
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


def test_only_the_release_write_is_left_once_the_build_returns(
    setup: tuple[FakeNomad, Variables, Path],
) -> None:
    fake, store, source = setup
    result = push(store, scripted_build(fake), "demo", source, lambda: NOW, commit="c0ffee1")
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
