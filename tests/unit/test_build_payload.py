"""A source that fits Nomad's dispatch payload limit travels as the dispatch Payload, its
upload to S3 off the dispatch's path and joined before the result (fake Nomad, real S3
server, the real build task); a larger one takes the S3 path alone."""

from __future__ import annotations

import hashlib
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from testsupport import ServerProcess, bucket_storage
from unit.fakebuild import FakeBuildNomad, real_task
from unit.fakenomad import FakeNomad

from nomadpaas import apps, jobspec
from nomadpaas.build import BuildJobFailed, run_build
from nomadpaas.errors import NomadPaasError, StorageUnreachable
from nomadpaas.models import Build, BuildEvent
from nomadpaas.nomad.variables import Variables
from nomadpaas.push import push
from nomadpaas.storage.s3 import S3Storage

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def storage(s3: ServerProcess) -> S3Storage:
    return bucket_storage(s3.url)


def source(tmp_path: Path, blob: int = 0) -> Path:
    dest = tmp_path / "shell-worker"
    shutil.copytree(EXAMPLES / "shell-worker", dest)
    if blob:
        (dest / "blob.bin").write_bytes(os.urandom(blob))  # incompressible
    return dest


def without_source_url(meta: dict[str, str]) -> tuple[int, bytes, bytes]:
    """The real task, its source URL pointing nowhere: it builds only from the payload."""
    return real_task({**meta, "source_url": meta["source_url"].replace("/sources/", "/none/")})


def test_a_small_source_is_the_dispatch_payload_and_still_lands_in_s3(
    s3: ServerProcess, tmp_path: Path
) -> None:
    fake = FakeBuildNomad(task=without_source_url)
    store = storage(s3)
    events: list[BuildEvent] = []
    with fake.client() as nomad:
        build = run_build(nomad, store, "web", source(tmp_path), on_event=events.append,
                          timeout=120, build_id="p1")  # fmt: skip
    assert build.status == "succeeded", build.log_tail
    (sent,) = fake.dispatches
    payload = sent["payload"]
    assert payload and len(payload) <= jobspec.DISPATCH_PAYLOAD_MAX_BYTES
    assert sent["meta"]["source_sha256"] == build.source_sha256
    assert hashlib.sha256(payload).hexdigest() == build.source_sha256
    # The same key and bytes as an upload before the dispatch would have stored.
    assert build.source_key == f"sources/web/{build.source_sha256}.tar.gz"
    assert store.get_bytes(build.source_key) == payload
    kinds = [e.kind for e in events]
    # Uploaded beside the build, once its task runs (while it starts, CPU is idle).
    assert kinds.index("allocated") < kinds.index("upload") < kinds.index("finished")
    assert kinds.index("upload") < kinds.index("uploaded") < kinds.index("finished")
    (dispatched,) = [e for e in events if e.kind == "dispatched"]
    assert dispatched.data["payload"] is True

    # Pushed again: the object is there, so nothing is uploaded (the payload still goes).
    events.clear()
    with fake.client() as nomad:
        again = run_build(nomad, store, "web", source(tmp_path / "2"), on_event=events.append,
                          timeout=120)  # fmt: skip
    assert again.status == "succeeded"
    kinds = [e.kind for e in events]
    assert "source-exists" in kinds and "upload" not in kinds
    assert fake.dispatches[-1]["payload"] == payload


def test_a_payload_that_does_not_match_its_sha256_fails_the_build(
    s3: ServerProcess, tmp_path: Path
) -> None:
    def tampered(meta: dict[str, str]) -> tuple[int, bytes, bytes]:
        return without_source_url({**meta, "source_sha256": "0" * 64})

    fake = FakeBuildNomad(task=tampered)
    with fake.client() as nomad, pytest.raises(BuildJobFailed) as info:
        run_build(nomad, storage(s3), "web", source(tmp_path), timeout=120)
    assert "dispatch payload's sha256" in info.value.message


def test_a_source_over_the_payload_limit_is_uploaded_before_the_dispatch(
    s3: ServerProcess, tmp_path: Path
) -> None:
    fake = FakeBuildNomad()
    store = storage(s3)
    events: list[BuildEvent] = []
    with fake.client() as nomad:
        build = run_build(nomad, store, "web", source(tmp_path, blob=20_000),
                          on_event=events.append, timeout=120)  # fmt: skip
    assert build.status == "succeeded"
    (sent,) = fake.dispatches
    assert "Payload" not in sent["body"] and sent["payload"] is None
    assert "source_sha256" not in sent["meta"]
    kinds = [e.kind for e in events]
    assert kinds.index("uploaded") < kinds.index("dispatched")
    assert store.exists(build.source_key)


def test_a_job_without_a_payload_file_gets_no_payload(s3: ServerProcess, tmp_path: Path) -> None:
    job = jobspec.render_build_job()
    del job["TaskGroups"][0]["Tasks"][0]["DispatchPayload"]
    fake = FakeBuildNomad()
    with fake.client() as nomad:
        build = run_build(nomad, storage(s3), "web", source(tmp_path), job=job, timeout=120)
    assert build.status == "succeeded"
    assert fake.dispatches[0]["payload"] is None and "Payload" not in fake.dispatches[0]["body"]


class FailingUpload(S3Storage):
    """S3 that refuses the source's upload (everything else works)."""

    def put_file(self, key: str, path: str | Path, **kwargs: Any) -> bool:
        if key.startswith("sources/"):
            raise StorageUnreachable("Cannot reach S3 to upload the source (test).")
        return super().put_file(key, path, **kwargs)


def test_a_failed_upload_fails_the_push_and_no_release_is_written(
    s3: ServerProcess, tmp_path: Path
) -> None:
    fake = FakeBuildNomad()
    failing = FailingUpload(
        s3.url, "nomadpaas", region="us-east-1", access_key_id="k", secret_access_key="s"
    )
    variables = FakeNomad()
    store = Variables(variables.client())
    apps.create(store, "demo", datetime(2026, 11, 28, tzinfo=UTC))

    def build(app: str, path: Path, **kwargs: Any) -> Build:
        with fake.client() as nomad:
            return run_build(nomad, failing, app, path, on_event=kwargs["on_event"],
                             timeout=120, build_id="f1")  # fmt: skip

    with pytest.raises(StorageUnreachable, match="upload the source"):
        push(store, build, "demo", source(tmp_path), lambda: datetime.now(UTC))
    assert len(fake.dispatches) == 1 and fake.dispatches[0]["payload"]  # built meanwhile
    assert not [p for m, p in variables.requests if m == "PUT" and "/releases/" in p]
    assert not failing.list_prefix("sources/") and not failing.list_prefix("slugs/")


class RefusingDispatch(FakeBuildNomad):
    """A Nomad whose dispatch fails (a 500, as Nomad's dispatch rules answer)."""

    def _dispatch(self, parent: str, request: Any, body: Any) -> Any:
        import httpx

        self.dispatches.append({"meta": (body or {}).get("Meta") or {}})
        return httpx.Response(500, text="dispatch refused (test)")


@pytest.mark.parametrize("blob", [0, 20_000], ids=["payload", "uploaded-first"])
def test_a_refused_dispatch_leaves_no_config_in_the_bucket(
    s3: ServerProcess, tmp_path: Path, blob: int
) -> None:
    fake = RefusingDispatch()
    store = storage(s3)
    with fake.client() as nomad, pytest.raises(NomadPaasError, match="dispatch refused"):
        run_build(nomad, store, "web", source(tmp_path, blob), config={"SECRET": "s3cr3t"},
                  timeout=120, build_id=f"r{blob}")  # fmt: skip
    (sent,) = fake.dispatches
    assert "config_url" in sent["meta"]  # the config had been staged for the task
    assert store.list_prefix("builds/") == []  # and no task will read it: removed
    assert store.list_prefix("sources/")  # the source landed all the same
