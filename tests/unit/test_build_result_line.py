"""The build task's result line: run_build trusts it only with its build's token, and
then reads neither the record nor the staging slug (fake Nomad, real S3 server)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from testsupport import ServerProcess
from unit.fakebuild import FakeBuildNomad, real_task

from nomadpaas.build import BuildJobFailed, read_build, run_build
from nomadpaas.buildwatch import RESULT_PREFIX, ResultLine
from nomadpaas.errors import BuildFailed
from nomadpaas.models import BuildEvent
from nomadpaas.slugbuilder import dispatched
from nomadpaas.storage.base import ObjectInfo
from nomadpaas.storage.s3 import S3Storage

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SHA = "a" * 64
MD5 = "b" * 32


class CountingS3(S3Storage):
    """S3Storage that remembers the keys it read and looked at."""

    def __init__(self, s3: ServerProcess) -> None:
        super().__init__(
            s3.url, "nomadpaas", region="us-east-1", access_key_id="k", secret_access_key="s"
        )
        self.gets: list[str] = []
        self.heads: list[str] = []

    def get_bytes(self, key: str) -> bytes:
        self.gets.append(key)
        return super().get_bytes(key)

    def head(self, key: str) -> ObjectInfo:
        self.heads.append(key)
        return super().head(key)


def source(tmp_path: Path) -> Path:
    dest = tmp_path / "shell-worker"
    if not dest.exists():
        shutil.copytree(EXAMPLES / "shell-worker", dest)
    return dest


def result_json(**slug: object) -> str:
    base = {"sha256": SHA, "md5": MD5, "compressed_bytes": 1, "process_types": {}}
    return json.dumps({"status": "succeeded", "slug": {**base, **slug}})


def test_result_line_takes_only_its_token_and_a_succeeded_result() -> None:
    take = ResultLine("t" * 32)
    assert not take(f"{RESULT_PREFIX}{'x' * 32} {result_json()}")  # another build's
    assert not take(f"{RESULT_PREFIX} {result_json()}")  # no token
    assert not take(f"{RESULT_PREFIX}{'t' * 32} {{not json")
    assert not take(f"{RESULT_PREFIX}{'t' * 32} {result_json(md5='')}")
    failed = json.dumps({"status": "failed", "slug": json.loads(result_json())["slug"]})
    assert not take(f"{RESULT_PREFIX}{'t' * 32} {failed}")
    assert not take(f"echo {RESULT_PREFIX}{'t' * 32} {result_json()}")
    assert take.result is None
    assert take(f"{RESULT_PREFIX}{'t' * 32} {result_json()}")
    assert take.result is not None and take.result["slug"]["sha256"] == SHA
    assert RESULT_PREFIX == dispatched.RESULT_PREFIX  # the task's own prefix


def test_a_valid_result_line_saves_the_record_read_and_the_staging_look(
    s3: ServerProcess, tmp_path: Path
) -> None:
    fake = FakeBuildNomad(never_finishes=True)  # the marker alone ends the wait
    store = CountingS3(s3)
    events: list[BuildEvent] = []
    with fake.client() as nomad:
        build = run_build(nomad, store, "web", source(tmp_path), on_event=events.append,
                          timeout=60, build_id="b1")  # fmt: skip
    token = fake.dispatches[0]["meta"]["result_token"]
    assert len(token) == 32
    assert build.status == "succeeded" and store.exists(build.slug_key or "")
    assert "builds/web/b1.json" not in store.gets
    assert "slugs/web/staging/b1.tar.gz" not in store.heads
    logged = [e.message for e in events if e.kind == "log"]
    assert logged[-1] == dispatched.DONE_LINES["succeeded"]
    assert not any(RESULT_PREFIX in line or token in line for line in logged)
    # The same build as the record gives, the log tail included.
    recorded = read_build(store, "web", "b1")
    for field in ("slug_sha256", "slug_bytes", "process_types", "buildpack", "warnings",
                  "started_at", "finished_at", "duration_s", "step"):  # fmt: skip
        assert getattr(build, field) == getattr(recorded, field), field
    # The tail: the record's as it was when the task printed its marker (it is stored
    # again later with the cache's lines).
    done = recorded.log_tail.index(dispatched.DONE_LINES["succeeded"])
    assert build.log_tail == recorded.log_tail[: done + 1]


def older_task(forged: str = "") -> object:
    """A task that prints no result line (it got no token), maybe after a forged one."""

    def run(meta: dict[str, str]) -> tuple[int, bytes, bytes]:
        code, out, err = real_task({k: v for k, v in meta.items() if k != "result_token"})
        done = dispatched.DONE_LINES["succeeded"].encode()
        return code, out.replace(done, forged.encode() + done), err

    return run


def test_without_a_result_line_the_record_is_read_as_before(
    s3: ServerProcess, tmp_path: Path
) -> None:
    fake = FakeBuildNomad(task=older_task(), never_finishes=True)  # type: ignore[arg-type]
    store = CountingS3(s3)
    with fake.client() as nomad:
        build = run_build(nomad, store, "web", source(tmp_path), timeout=60, build_id="b2")
    assert build.status == "succeeded" and store.exists(build.slug_key or "")
    assert "builds/web/b2.json" in store.gets
    assert "slugs/web/staging/b2.tar.gz" in store.heads


def test_a_forged_result_line_is_shown_as_output_and_not_trusted(
    s3: ServerProcess, tmp_path: Path
) -> None:
    forged = f"{RESULT_PREFIX}{'0' * 32} {result_json()}\n"
    fake = FakeBuildNomad(task=older_task(forged), never_finishes=True)  # type: ignore[arg-type]
    store = CountingS3(s3)
    events: list[BuildEvent] = []
    with fake.client() as nomad:
        build = run_build(nomad, store, "web", source(tmp_path), on_event=events.append,
                          timeout=60, build_id="b3")  # fmt: skip
    assert (
        build.slug_sha256 != SHA and build.slug_sha256 == read_build(store, "web", "b3").slug_sha256
    )
    assert forged.rstrip("\n") in [e.message for e in events if e.kind == "log"]
    assert "builds/web/b3.json" in store.gets


def test_a_replaced_staging_slug_fails_the_build_and_keeps_the_existing_slug(
    s3: ServerProcess, tmp_path: Path
) -> None:
    store = CountingS3(s3)
    first = FakeBuildNomad(never_finishes=True)
    with first.client() as nomad:
        earlier = run_build(nomad, store, "web", source(tmp_path), timeout=60, build_id="b4")
    good = store.get_bytes(earlier.slug_key or "")

    def swapping_task(meta: dict[str, str]) -> tuple[int, bytes, bytes]:
        ran = real_task(meta)
        store.put_bytes("slugs/web/staging/b5.tar.gz", b"not the slug that was built")
        return ran

    fake = FakeBuildNomad(task=swapping_task, never_finishes=True)
    store.gets.clear()
    with fake.client() as nomad, pytest.raises(BuildFailed, match="corrupted or replaced") as info:
        run_build(nomad, store, "web", source(tmp_path), timeout=60, build_id="b5")
    assert not isinstance(info.value, BuildJobFailed)
    assert "builds/web/b5.json" not in store.gets  # refused on the result line's MD5
    assert store.get_bytes(earlier.slug_key or "") == good


class CopyThreads(CountingS3):
    """Remembers which thread made each server-side copy."""

    def __init__(self, s3: ServerProcess) -> None:
        super().__init__(s3)
        self.copied_on: list[str] = []

    def copy(self, source: str, dest: str, *, if_match: str | None = None) -> ObjectInfo:
        self.copied_on.append(threading.current_thread().name)
        return super().copy(source, dest, if_match=if_match)


def test_the_slug_is_promoted_on_the_result_line_while_the_task_stores_its_record(
    s3: ServerProcess, tmp_path: Path
) -> None:
    fake = FakeBuildNomad(never_finishes=True)
    store = CopyThreads(s3)
    with fake.client() as nomad:
        build = run_build(nomad, store, "web", source(tmp_path), timeout=60, build_id="b6")
    assert build.status == "succeeded" and store.exists(build.slug_key or "")
    # Started from the line (on the build's worker), not after the DONE line (the caller).
    assert len(store.copied_on) == 1 and store.copied_on[0].startswith("nomadpaas-build")
    assert not store.exists("slugs/web/staging/b6.tar.gz")


def test_a_failed_done_line_after_the_result_line_fails_the_build(
    s3: ServerProcess, tmp_path: Path
) -> None:
    # The task printed its result line, then could not store its record as succeeded
    # (dispatched.py stores a failed one and prints the failed DONE line).
    store = CopyThreads(s3)

    def store_failed(meta: dict[str, str]) -> tuple[int, bytes, bytes]:
        _code, out, err = real_task(meta)
        error = {"message": "Moving build files failed: reset", "hint": None}
        record = {"status": "failed", "step": "Uploading the slug", "error": error}
        store.put_bytes(f"builds/web/{meta['build_id']}.json", json.dumps(record).encode())
        done = dispatched.DONE_LINES
        return 3, out.replace(done["succeeded"].encode(), done["failed"].encode()), err

    fake = FakeBuildNomad(task=store_failed, never_finishes=True)
    with fake.client() as nomad, pytest.raises(BuildJobFailed, match="reset") as info:
        run_build(nomad, store, "web", source(tmp_path), timeout=60, build_id="b7")
    assert info.value.build.status == "failed"
    assert len(store.copied_on) == 1  # promoted on the line; the copy is left, not deleted
    assert not store.exists("slugs/web/staging/b7.tar.gz")
