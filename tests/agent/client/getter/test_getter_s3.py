"""`s3::` artifacts against a real moto S3 server, signed with the agent's credentials."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from agent.client.getter.archive_factory import directory, file, make_tar, symlink
from moto.server import ThreadedMotoServer
from testsupport import free_port

from nomadpaas.agent.client.getter.getter import ArtifactError, get_artifact

AGENT_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}
BUCKET = "nomadpaas"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def slug(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    entries = [
        directory("app/.venv/bin"),
        file("app/.venv/bin/python3", b"py", mode=0o755),
        symlink("app/.venv/bin/python", "python3"),
        file("app/Procfile", b"web: run"),
    ]
    body = make_tar(tmp_path_factory.mktemp("slug") / "slug.tar.gz", entries).read_bytes()
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="slugs/web/abc.tar.gz", Body=body)
    client.put_object(Bucket=BUCKET, Key="files/conf file.txt", Body=b"conf")
    return body


def test_s3_slug_downloads_verifies_and_unpacks(
    s3_endpoint: str, slug: bytes, tmp_path: Path
) -> None:
    digest = hashlib.sha256(slug).hexdigest()
    artifact = {
        "GetterSource": f"s3::{s3_endpoint}/{BUCKET}/slugs/web/abc.tar.gz",
        "GetterOptions": {"checksum": f"sha256:{digest}"},
        "RelativeDest": "local/slug",
    }
    get_artifact(artifact, tmp_path / "web", tmp_path, {}, agent_env=AGENT_ENV)
    assert (tmp_path / "web/local/slug/app/.venv/bin/python").read_bytes() == b"py"


def test_s3_key_with_a_space_is_signed_and_fetched(
    s3_endpoint: str, slug: bytes, tmp_path: Path
) -> None:
    artifact = {"GetterSource": f"s3::{s3_endpoint}/{BUCKET}/files/conf%20file.txt"}
    get_artifact(artifact, tmp_path / "web", tmp_path, {}, agent_env=AGENT_ENV)
    assert (tmp_path / "web/local/conf file.txt").read_bytes() == b"conf"


def test_s3_credentials_never_come_from_the_task_env(
    s3_endpoint: str, slug: bytes, tmp_path: Path
) -> None:
    artifact = {"GetterSource": f"s3::{s3_endpoint}/{BUCKET}/slugs/web/abc.tar.gz"}
    with pytest.raises(
        ArtifactError,
        match=r"GetObject s3://nomadpaas/slugs/web/abc.tar.gz: bad response code: 403",
    ):
        get_artifact(artifact, tmp_path / "web", tmp_path, AGENT_ENV, agent_env={})
    assert not (tmp_path / "web/local/app").exists()


def test_s3_missing_key_reports_the_s3_code(s3_endpoint: str, slug: bytes, tmp_path: Path) -> None:
    artifact = {"GetterSource": f"s3::{s3_endpoint}/{BUCKET}/slugs/none.tar.gz"}
    with pytest.raises(ArtifactError, match=r"bad response code: 404 \(NoSuchKey") as info:
        get_artifact(artifact, tmp_path / "web", tmp_path, {}, agent_env=AGENT_ENV)
    assert not info.value.recoverable
