"""The dispatched task's own conduct: timestamps, and the cache saved on idle CPU only."""

from __future__ import annotations

import json
import os
import re
import tarfile
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nomadpaas.slugbuilder import dispatched
from nomadpaas.slugbuilder.task import FileTransfer


def test_now_is_iso_8601_utc_to_the_millisecond() -> None:
    before = datetime.now(UTC)
    stamp = dispatched._now()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", stamp)
    parsed = datetime.fromisoformat(stamp)
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= parsed <= after


class _PolicyRecorder(FileTransfer):
    """Notes the calling thread's scheduling policy at every upload."""

    def __init__(self) -> None:
        self.stores: list[tuple[str, int]] = []

    def store(self, path: Path, url: str) -> str | None:
        kind = url.rsplit("/", 2)[-2]  # slugs, builds or cache
        self.stores.append((kind, os.sched_getscheduler(0)))
        return super().store(path, url)


@pytest.fixture
def meta(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    bin_dir = tmp_path / "bps" / "counter" / "bin"
    bin_dir.mkdir(parents=True)
    scripts = {
        "detect": "echo Counter",
        "compile": 'mkdir -p "$2/deps"; date +%s%N > "$2/deps/stamp"',
        "release": "printf 'default_process_types:\\n  web: echo hi\\n'",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\nset -eu\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("NOMADPAAS_BUILDPACKS_DIR", str(tmp_path / "bps"))
    bucket = tmp_path / "bucket"
    (bucket / "sources").mkdir(parents=True)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "hello.txt").write_text("hi")
    with tarfile.open(bucket / "sources" / "app.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src", arcname=".")
    (bucket / "config").mkdir()
    (bucket / "config" / "app.json").write_text(json.dumps({"BUILDPACK_URL": "counter"}))
    return {
        "app": "app",
        "build_id": "b1",
        "source_url": (bucket / "sources" / "app.tar.gz").as_uri(),
        "slug_url": (bucket / "slugs" / "app.tar.gz").as_uri(),
        "metadata_url": (bucket / "builds" / "b1.json").as_uri(),
        "cache_url": (bucket / "cache" / "app.tar.gz").as_uri(),
        "cache_put_url": (bucket / "cache" / "app.tar.gz").as_uri(),
        "config_url": (bucket / "config" / "app.json").as_uri(),
    }


def _run_in_thread(
    meta: dict[str, str], work: Path, idle: bool
) -> tuple[int, _PolicyRecorder, int]:
    """Run the task on its own thread (its scheduling policy is per thread: a failed
    restore must not leave pytest's thread on idle CPU)."""
    transfer = _PolicyRecorder()
    out: dict[str, int] = {}
    work.mkdir()

    def body() -> None:
        code, _record = dispatched.run(meta, transfer, work, idle_after_result=idle)
        out["code"], out["after"] = code, os.sched_getscheduler(0)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive()
    return out["code"], transfer, out["after"]


def test_the_cache_is_saved_on_idle_cpu_once_the_result_is_stored(
    meta: dict[str, str], tmp_path: Path
) -> None:
    code, transfer, after = _run_in_thread(meta, tmp_path / "w1", idle=True)
    assert code == 0
    normal, idle = os.SCHED_OTHER, os.SCHED_IDLE
    assert transfer.stores == [
        ("slugs", normal),
        ("builds", normal),  # the result: at full speed
        ("cache", idle),  # only the next build needs it
        ("builds", normal),  # the final timings, after the policy came back
    ]
    assert after == normal
    record = json.loads(Path(meta["metadata_url"].removeprefix("file://")).read_text())
    assert record["status"] == "succeeded"
    assert "pack_cache" in record["timings"]


def test_without_the_flag_nothing_runs_on_idle_cpu(meta: dict[str, str], tmp_path: Path) -> None:
    code, transfer, after = _run_in_thread(meta, tmp_path / "w1", idle=False)
    assert code == 0
    assert {policy for _kind, policy in transfer.stores} == {os.SCHED_OTHER}
    assert after == os.SCHED_OTHER
