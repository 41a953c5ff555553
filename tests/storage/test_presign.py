"""PathStylePresigner gives the URL botocore gives (same path, query and signature) for a
path-style endpoint at a fixed time, and matches AWS's own SigV4 query-string example;
S3Storage uses it for custom endpoints, and the server takes its URLs."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import boto3
import botocore.auth
import httpx
import pytest
from botocore.config import Config
from testsupport import ServerProcess, bucket_storage

from nomadpaas.storage.presign import PathStylePresigner

AT = datetime(2026, 11, 28, 21, 5, 9, tzinfo=UTC)
KEYS = [
    "slugs/web/staging/20261128T210509Z-1a2b3c4d.tar.gz",
    "builds/web/a b+c=d&e.json",
    "sources/wéb/ünïcode ~tilde!*'().tar.gz",
]


def botocore_url(
    endpoint: str, method: str, key: str, token: str | None, monkeypatch: pytest.MonkeyPatch
) -> str:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: AT.replace(tzinfo=None))
    client = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="wJalr/K7MDENG+bPxRfiCY",
        aws_session_token=token, region_name="eu-west-3",
    ).client("s3", endpoint_url=endpoint, config=Config(
        signature_version="s3v4", s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    ))  # fmt: skip
    operation = "get_object" if method == "GET" else "put_object"
    return client.generate_presigned_url(
        operation, Params={"Bucket": "nomadpaas", "Key": key}, ExpiresIn=7200
    )


def parts(url: str) -> tuple[str, str, dict[str, str]]:
    split = urlsplit(url)
    return split.netloc, split.path, dict(parse_qsl(split.query, keep_blank_values=True))


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9000", "https://s3.example.net"])
@pytest.mark.parametrize("method", ["GET", "PUT"])
@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE//token="])
def test_the_url_is_botocores(
    endpoint: str, method: str, key: str, token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = PathStylePresigner(endpoint, "eu-west-3").presign(
        method, "nomadpaas", key, 7200, access_key="AKIDEXAMPLE",
        secret_key="wJalr/K7MDENG+bPxRfiCY", token=token, now=AT,
    )  # fmt: skip
    theirs = botocore_url(endpoint, method, key, token, monkeypatch)
    assert parts(ours) == parts(theirs)
    assert urlsplit(ours).path == urlsplit(theirs).path  # the same escaping on the wire


def test_aws_documented_example_signature() -> None:
    # AWS S3 docs, "Authenticating Requests: Using Query Parameters (AWS Signature
    # Version 4)": GET examplebucket/test.txt (virtual-hosted: the bucket is the host).
    presigner = PathStylePresigner("https://examplebucket.s3.amazonaws.com", "us-east-1")
    url = presigner.presign_path(
        "GET", "/test.txt", 86400, access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        now=datetime(2013, 5, 24, tzinfo=UTC),
    )  # fmt: skip
    host, path, query = parts(url)
    assert (host, path) == ("examplebucket.s3.amazonaws.com", "/test.txt")
    assert query["X-Amz-Credential"] == "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"
    assert query["X-Amz-Signature"] == (
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )


def test_a_default_port_is_signed_without_it() -> None:
    for endpoint, host in (("http://minio:80", "minio"), ("https://minio:443/", "minio"),
                           ("http://[::1]:9000", "[::1]:9000")):  # fmt: skip
        assert PathStylePresigner(endpoint, "us-east-1")._host == host
    assert not PathStylePresigner.supported("http://user:pw@minio:9000")
    assert not PathStylePresigner.supported("ftp://minio")


def test_s3storage_presigns_without_botocore_and_the_server_takes_the_urls(
    s3: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = bucket_storage(s3.url)
    store.ensure_bucket()

    def refuse(*args: object, **kwargs: object) -> str:
        raise AssertionError("botocore was asked to presign")

    monkeypatch.setattr(store._client, "generate_presigned_url", refuse)
    put = store.presign_put("slugs/web/staging/p 1.tar.gz", expires_s=300)
    assert httpx.put(put, content=b"slug bytes").status_code == 200
    assert httpx.get(store.presign_get("slugs/web/staging/p 1.tar.gz")).content == b"slug bytes"
