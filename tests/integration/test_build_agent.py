"""`Platform.build` end to end: the flask example through the real agent and S3 server.

Real parts only: `nomadpaas agent --dev` runs the `nomadpaas-build` job as a raw_exec
process (this interpreter, `-m nomadpaas.slugbuilder task`), which fetches the source
and stores the slug, cache and build record through presigned URLs on the real S3
server; the platform follows the task's log over `/v1/client/fs/logs`. Skipped only
when the agent has no jobs API at all (404 on /v1/jobs).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nomad
import pytest
from testsupport import ServerProcess, bucket_storage

from nomadpaas import Platform, Settings, jobspec
from nomadpaas.build import BuildJobFailed
from nomadpaas.errors import NotFound
from nomadpaas.models import BuildEvent
from nomadpaas.storage.base import ObjectInfo
from nomadpaas.storage.keys import sha256_file
from nomadpaas.storage.s3 import S3Storage

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: A cold flask build installs a dependency; generous for a loaded 2-core machine.
BUILD_TIMEOUT_S = 240.0


@pytest.fixture
def platform(agent: ServerProcess, s3: ServerProcess, tmp_path: Path) -> Iterator[Platform]:
    response = httpx.get(f"{agent.url}/v1/jobs", timeout=30)
    if response.status_code == 404:
        pytest.skip("the embedded agent has no jobs API yet (/v1/jobs answered 404)")
    storage = bucket_storage(s3.url)
    settings = Settings(nomad_addr=agent.url, s3_endpoint=s3.url, home=tmp_path / "home")
    with Platform(settings, storage=storage) as platform:
        yield platform


def test_flask_builds_through_the_agent_with_live_output(
    platform: Platform, agent: ServerProcess, tmp_path: Path
) -> None:
    platform.create_app("flaskapp")
    platform.config_set("flaskapp", {"GREETING": "hej"})
    source = tmp_path / "flask"
    shutil.copytree(EXAMPLES / "flask", source)
    events: list[BuildEvent] = []

    build = platform.build(
        "flaskapp", source, on_event=events.append, timeout=BUILD_TIMEOUT_S, commit="abc123"
    )

    log = [e.message for e in events if e.kind == "log"]
    assert build.status == "succeeded", log
    assert build.process_types["web"] == "python app.py"
    assert build.buildpack and "Python" in build.buildpack
    assert build.commit == "abc123" and build.alloc_id
    # Live output arrived as lines, Heroku style, before the build finished.
    assert log and log[0].startswith("-----> ")
    assert any("Compiled slug size" in line for line in log)
    kinds = [e.kind for e in events]
    assert kinds.index("allocated") < kinds.index("log") < kinds.index("finished")

    # The slug is content-addressed and intact; the record says the same.
    storage = platform.storage
    local = tmp_path / "slug.tar.gz"
    storage.get_file(build.slug_key or "", local)
    assert sha256_file(local) == build.slug_sha256
    with tarfile.open(local) as tar:
        assert "./app/app.py" in tar.getnames()
    record = json.loads(storage.get_bytes(f"builds/flaskapp/{build.build_id}.json"))
    assert record["status"] == "succeeded" and record["slug"]["sha256"] == build.slug_sha256
    # The task saves its build cache after storing the record, off the build's path: the
    # build may return first, so give the save time (bounded).
    deadline = time.monotonic() + 60
    while not storage.exists("cache/flaskapp/nomadpaas-1.tar.gz"):
        assert time.monotonic() < deadline, "the build cache was never saved"
        time.sleep(0.05)
    assert not storage.list_prefix("slugs/flaskapp/staging/")

    # Nomad holds a dispatched child of the parameterized job; no credential in it.
    client = nomad.Nomad(host="127.0.0.1", port=agent.port, timeout=30)
    child = client.job.get_job(build.job_id)
    assert child["ParentID"] == jobspec.BUILD_JOB_ID and child["Meta"]["app"] == "flaskapp"
    spec = json.dumps(client.job.get_job(jobspec.BUILD_JOB_ID))
    assert "AWS_SECRET" not in spec and "secret_access_key" not in spec.lower()
    assert "hej" not in json.dumps(child)  # config vars travel via S3, not job meta

    # Pushing the same source again uploads nothing.
    events.clear()
    again = platform.build("flaskapp", source, on_event=events.append, timeout=BUILD_TIMEOUT_S)
    assert again.status == "succeeded" and again.source_sha256 == build.source_sha256
    assert "source-exists" in [e.kind for e in events] and "upload" not in [e.kind for e in events]


def test_failing_build_through_the_agent_is_exit_3_with_its_output(
    platform: Platform, tmp_path: Path
) -> None:
    platform.create_app("broken")
    source = tmp_path / "broken"
    shutil.copytree(EXAMPLES / "fail-bad-procfile", source)
    lines: list[str] = []
    with pytest.raises(BuildJobFailed) as info:
        platform.build(
            "broken",
            source,
            timeout=BUILD_TIMEOUT_S,
            on_event=lambda e: lines.append(e.message) if e.kind == "log" else None,
        )
    err = info.value
    assert err.exit_code == 3 and err.build.alloc_id
    assert any("Build failed" in line for line in err.build.log_tail)
    assert any("Build failed" in line for line in lines)  # it was streamed live too


def test_unknown_app_is_not_found_before_any_upload(platform: Platform, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        platform.build("ghost", EXAMPLES / "flask")
    platform.storage.ensure_bucket()
    assert platform.storage.list_prefix("sources/") == []


def test_redispatching_a_build_id_reuses_the_child_job(platform: Platform, tmp_path: Path) -> None:
    """The idempotency token (a query parameter) makes a retried dispatch find the child
    it already created; following it works from the job's allocations."""
    platform.create_app("retry")
    source = tmp_path / "worker"
    shutil.copytree(EXAMPLES / "shell-worker", source)
    first = platform.build("retry", source, build_id="b-retry-1", detach=True)
    events: list[BuildEvent] = []
    second = platform.build(
        "retry", source, build_id="b-retry-1", timeout=BUILD_TIMEOUT_S, on_event=events.append
    )
    assert first.status == "pending" and second.status == "succeeded"
    assert second.job_id == first.job_id
    (dispatched,) = [e for e in events if e.kind == "dispatched"]
    assert dispatched.data["deduplicated"] is True
    assert set(second.process_types) == {"web", "worker"}
    info = platform.build_info("retry", "b-retry-1")
    assert info.status == "succeeded" and info.slug_key == second.slug_key


class _CountingS3(S3Storage):
    """S3Storage that remembers the keys it read and looked at."""

    def __init__(self, url: str) -> None:
        super().__init__(
            url, "nomadpaas", region="us-east-1", access_key_id="k", secret_access_key="s"
        )
        self.read: list[str] = []

    def get_bytes(self, key: str) -> bytes:
        self.read.append(key)
        return super().get_bytes(key)

    def head(self, key: str) -> ObjectInfo:
        self.read.append(key)
        return super().head(key)


def test_the_task_result_line_spares_reading_the_record_back(
    agent: ServerProcess, s3: ServerProcess, tmp_path: Path
) -> None:
    from nomadpaas.build import read_build, run_build
    from nomadpaas.buildwatch import RESULT_PREFIX
    from nomadpaas.nomad.client import NomadClient

    storage = _CountingS3(s3.url)
    storage.ensure_bucket()
    source = tmp_path / "shell-worker"
    shutil.copytree(EXAMPLES / "shell-worker", source)
    events: list[BuildEvent] = []
    with NomadClient(agent.url) as client:
        build = run_build(client, storage, "worker", source, on_event=events.append, timeout=120)
    assert build.status == "succeeded" and storage.exists(build.slug_key or "")
    assert not [k for k in storage.read if k.startswith(("builds/", "slugs/"))], storage.read
    assert not [e for e in events if e.kind == "log" and RESULT_PREFIX in e.message]
    assert build.slug_sha256 == read_build(storage, "worker", build.build_id).slug_sha256


class _LateSourceS3(S3Storage):
    """S3Storage whose source upload waits until the build's record is stored: a task
    that fetched its source from S3 would find nothing there."""

    def __init__(self, url: str) -> None:
        super().__init__(
            url, "nomadpaas", region="us-east-1", access_key_id="k", secret_access_key="s"
        )
        self.waited = False

    def put_file(self, key: str, path: str | Path, **kwargs: object) -> bool:
        if key.startswith("sources/"):
            deadline = time.monotonic() + 120
            while not self.list_prefix("builds/"):
                assert time.monotonic() < deadline, "the build stored no record"
                time.sleep(0.02)
            self.waited = True
        return super().put_file(key, path, **kwargs)  # type: ignore[arg-type]


def test_a_small_source_travels_as_the_dispatch_payload(
    agent: ServerProcess, s3: ServerProcess, tmp_path: Path
) -> None:
    from nomadpaas.build import run_build
    from nomadpaas.nomad.client import NomadClient

    storage = _LateSourceS3(s3.url)
    source = tmp_path / "shell-worker"
    shutil.copytree(EXAMPLES / "shell-worker", source)
    events: list[BuildEvent] = []
    with NomadClient(agent.url) as client:
        build = run_build(client, storage, "pay", source, on_event=events.append, timeout=120)
    assert build.status == "succeeded", build.log_tail
    assert storage.waited  # the source reached S3 only after the build had its result
    kinds = [e.kind for e in events]
    assert kinds.index("dispatched") < kinds.index("uploaded") < kinds.index("finished")
    stored = storage.get_bytes(build.source_key)
    assert hashlib.sha256(stored).hexdigest() == build.source_sha256
    # Nomad holds the payload (base64) and the digest the task checked it against.
    child = nomad.Nomad(host="127.0.0.1", port=agent.port, timeout=30).job.get_job(build.job_id)
    assert base64.b64decode(child["Payload"]) == stored
    assert child["Meta"]["source_sha256"] == build.source_sha256
