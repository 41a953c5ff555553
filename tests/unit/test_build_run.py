"""run_build against a fake Nomad (MockTransport) and the real S3 server: the real build
task runs through the presigned URLs it is dispatched with."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from testsupport import ServerProcess, bucket_storage, free_port
from unit.fakebuild import FakeBuildNomad

from nomadpaas import jobspec
from nomadpaas.build import (
    RECORD_STORED_LINES,
    BuildJobFailed,
    ensure_build_job,
    idempotency_token,
    read_build,
    run_build,
)
from nomadpaas.errors import (
    BuildFailed,
    Conflict,
    InvalidInput,
    NomadUnreachable,
    NotFound,
    TimedOut,
)
from nomadpaas.models import BuildEvent
from nomadpaas.nomad.client import NomadClient
from nomadpaas.nomad.jobs import Jobs
from nomadpaas.slugbuilder.dispatched import DONE_LINES
from nomadpaas.storage.keys import sha256_file
from nomadpaas.storage.s3 import S3Storage

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def storage(s3: ServerProcess) -> S3Storage:
    return bucket_storage(s3.url)


def copy_example(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(EXAMPLES / name, dest)
    return dest


def test_build_uploads_once_dispatches_idempotently_and_streams_every_line(
    s3: ServerProcess, tmp_path: Path
) -> None:
    fake = FakeBuildNomad()
    store = storage(s3)
    source = copy_example("shell-worker", tmp_path)
    events: list[BuildEvent] = []
    with fake.client() as nomad:
        build = run_build(
            nomad, store, "web", source, on_event=events.append, timeout=120,
            config={"GREETING": "hi"}, build_id="b1",
        )  # fmt: skip

    assert build.status == "succeeded" and build.build_id == "b1"
    assert set(build.process_types) == {"web", "worker"}
    assert build.slug_key == f"slugs/web/{build.slug_sha256}.tar.gz"
    local = tmp_path / "slug.tar.gz"
    store.get_file(build.slug_key, local)
    assert sha256_file(local) == build.slug_sha256
    # The record's MD5 is the uploaded bytes' (what the promotion's copy is checked with).
    slug_record = json.loads(store.get_bytes("builds/web/b1.json"))["slug"]
    assert slug_record["md5"] == hashlib.md5(local.read_bytes(), usedforsecurity=False).hexdigest()
    assert store.head(build.slug_key).etag == slug_record["md5"]
    keys = [o.key for o in store.list_prefix("")]
    assert not [k for k in keys if "/staging/" in k or k.endswith(".config.json")], keys
    assert "builds/web/b1.json" in keys and build.source_key in keys

    # The live log is exactly the task's stdout, line by line, in order, but for the
    # result line meant for the platform (with this build's token).
    code, stdout, _ = next(iter(fake.results.values()))
    assert code == 0
    log = [e.message for e in events if e.kind == "log"]
    token = fake.dispatches[0]["meta"]["result_token"]
    shown = [line for line in stdout.decode().splitlines() if token not in line]
    assert token and len(shown) == len(stdout.decode().splitlines()) - 1
    assert log == shown and log[0].startswith("-----> ")
    kinds = [e.kind for e in events]
    # A small source goes as the dispatch payload: its upload starts once the task runs.
    assert kinds.index("packed") < kinds.index("job-registered") < kinds.index("dispatched")
    assert kinds.index("dispatched") < kinds.index("allocated") < kinds.index("upload")
    assert kinds.index("upload") < kinds.index("uploaded") < kinds.index("finished")

    # Dispatch: the token is a query parameter (never in the body), meta are URLs.
    (first,) = fake.dispatches
    assert first["token"] == idempotency_token("web", build.source_sha256, "b1")
    assert "idempotency_token" not in first["body"]
    meta = first["meta"]
    assert set(jobspec.BUILD_META_REQUIRED) <= set(meta)
    assert meta["source_url"].startswith(s3.url) and "X-Amz-Signature" in meta["source_url"]
    assert "config_url" in meta and "GREETING" not in str(meta)

    # Same source again: nothing uploaded, the job is not registered again.
    events.clear()
    with fake.client() as nomad:
        again = run_build(nomad, store, "web", source, on_event=events.append, timeout=120)
    assert "source-exists" in [e.kind for e in events]
    assert "upload" not in [e.kind for e in events]
    assert "job-current" in [e.kind for e in events]
    assert len(fake.registrations) == 1
    assert again.source_sha256 == build.source_sha256 and again.status == "succeeded"


def test_same_build_id_dispatches_once(s3: ServerProcess, tmp_path: Path) -> None:
    fake = FakeBuildNomad()
    source = copy_example("shell-worker", tmp_path)
    with fake.client() as nomad:
        first = run_build(nomad, storage(s3), "web", source, build_id="same", detach=True)
        second = run_build(nomad, storage(s3), "web", source, build_id="same", detach=True)
    assert first.status == second.status == "pending"
    assert first.job_id == second.job_id and len(fake.results) == 1
    assert fake.dispatches[0]["token"] == fake.dispatches[1]["token"]
    assert storage(s3).exists(first.source_key)  # uploaded before a detached build returns
    # The detached build ran (synchronously, in the fake): its record tells the result.
    done = read_build(storage(s3), "web", "same")
    assert done.status == "succeeded" and done.slug_key == "slugs/web/staging/same.tar.gz"
    assert set(done.process_types) == {"web", "worker"} and done.log_tail
    with pytest.raises(NotFound):
        read_build(storage(s3), "web", "never")


def test_failed_build_raises_build_failed_with_step_and_tail(
    s3: ServerProcess, tmp_path: Path
) -> None:
    fake = FakeBuildNomad()
    source = copy_example("fail-bad-procfile", tmp_path)
    lines: list[str] = []
    with (
        fake.client() as nomad,
        pytest.raises(BuildJobFailed) as info,
    ):
        run_build(nomad, storage(s3), "web", source, timeout=120,
                  on_event=lambda e: e.kind == "log" and lines.append(e.message))  # fmt: skip
    err = info.value
    assert isinstance(err, BuildFailed) and err.exit_code == 3
    assert err.build.status == "failed" and err.build.error
    assert err.build.log_tail and any("Build failed" in line for line in err.build.log_tail)
    # The record's tail ends where the task stored it; the task then said so on stdout.
    assert lines[-2:] == [err.build.log_tail[-1], DONE_LINES["failed"]]
    assert err.to_dict()["build"]["status"] == "failed"
    assert not [o.key for o in storage(s3).list_prefix("slugs/")]


def test_task_dying_without_a_record_reports_its_stderr(s3: ServerProcess, tmp_path: Path) -> None:
    def crash(meta: dict[str, str]) -> tuple[int, bytes, bytes]:
        return 1, b"-----> Starting\n", b"Traceback (most recent call last):\nKeyError: 'x'\n"

    fake = FakeBuildNomad(task=crash, running_reads=1)
    source = copy_example("shell-worker", tmp_path)
    with fake.client() as nomad, pytest.raises(BuildJobFailed) as info:
        run_build(nomad, storage(s3), "web", source, timeout=60)
    build = info.value.build
    assert "exited" in (build.error or "") and "Exit Code: 1" in (build.error or "")
    assert build.log_tail[-1] == "KeyError: 'x'" and "-----> Starting" in build.log_tail


def test_timeout_raises_timed_out(s3: ServerProcess, tmp_path: Path) -> None:
    fake = FakeBuildNomad(task=lambda meta: (0, b"-----> Working\n", b""), never_finishes=True)
    source = copy_example("shell-worker", tmp_path)
    with fake.client() as nomad, pytest.raises(TimedOut) as info:
        run_build(nomad, storage(s3), "web", source, timeout=1.5)
    assert info.value.exit_code == 5 and "goes on" in info.value.message


def test_nomad_down_is_exit_6_after_the_upload(s3: ServerProcess, tmp_path: Path) -> None:
    source = copy_example("shell-worker", tmp_path)
    with (
        NomadClient(f"http://127.0.0.1:{free_port()}", timeout=5) as nomad,
        pytest.raises(NomadUnreachable) as info,
    ):
        run_build(nomad, storage(s3), "web", source)
    assert info.value.exit_code == 6


def test_oversized_source_is_refused_before_anything_is_sent(
    s3: ServerProcess, tmp_path: Path
) -> None:
    fake = FakeBuildNomad()
    source = copy_example("shell-worker", tmp_path)
    (source / "blob.bin").write_bytes(b"\0" * 50_000)
    store = storage(s3)
    with fake.client() as nomad, pytest.raises(InvalidInput) as info:
        run_build(nomad, store, "web", source, max_source_bytes=40_000)
    assert ".slugignore" in (info.value.hint or "")
    assert fake.requests == []
    store.ensure_bucket()
    assert store.list_prefix("") == []


def test_ensure_build_job_registers_only_when_needed_and_refuses_foreign_jobs() -> None:
    fake = FakeBuildNomad()
    rendered = jobspec.render_build_job(python="/usr/bin/python3")
    with fake.client() as nomad:
        jobs = Jobs(nomad)
        assert ensure_build_job(jobs, rendered) is True
        # Nomad adds defaults: still "the same" job.
        fake.jobs[rendered["ID"]]["TaskGroups"][0]["Tasks"][0]["User"] = ""
        assert ensure_build_job(jobs, rendered) is False
        changed = jobspec.render_build_job(python="/opt/other/python3")
        assert ensure_build_job(jobs, changed) is True
        fake.jobs[rendered["ID"]]["Stop"] = True
        assert ensure_build_job(jobs, changed) is True
        fake.jobs[rendered["ID"]]["Meta"] = {}
        with pytest.raises(Conflict):
            ensure_build_job(jobs, changed)
    assert len(fake.registrations) == 3


def test_the_result_is_taken_when_the_task_says_its_record_is_stored(
    s3: ServerProcess, tmp_path: Path
) -> None:
    # The task stores its record, prints the marker, then saves the cache: the platform
    # does not wait for the allocation to end (here it never does).
    fake = FakeBuildNomad(never_finishes=True)
    source = copy_example("shell-worker", tmp_path)
    with fake.client() as nomad:
        build = run_build(nomad, storage(s3), "web", source, timeout=60, build_id="b9")
    assert build.status == "succeeded" and storage(s3).exists(build.slug_key or "")
    assert sorted(RECORD_STORED_LINES) == sorted(DONE_LINES.values())


def test_a_marker_line_without_a_record_does_not_end_the_wait(
    s3: ServerProcess, tmp_path: Path
) -> None:
    def impostor(meta: dict[str, str]) -> tuple[int, bytes, bytes]:
        return 1, b"-----> Build succeeded\n-----> not really\n", b"boom\n"

    fake = FakeBuildNomad(task=impostor, running_reads=4)
    source = copy_example("shell-worker", tmp_path)
    with fake.client() as nomad, pytest.raises(BuildJobFailed) as info:
        run_build(nomad, storage(s3), "web", source, timeout=60)
    assert "Exit Code: 1" in (info.value.build.error or "")
    assert fake.reads and max(fake.reads.values()) > 4  # it waited for the terminal status
