"""SigV4 signing against AWS's published example, and S3 source parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nomadpaas.agent.client.getter.errors import ArtifactError
from nomadpaas.agent.client.getter.s3 import Credentials, credentials, parse_source, sign_v4

# AWS S3 API reference, "Signature Calculations for the Authorization Header", example
# "GET Object" (also used by the test suites of several SigV4 libraries).
EXAMPLE_CREDS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
EXAMPLE_AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
    "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
    "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
)


def test_sign_v4_matches_the_aws_get_object_example() -> None:
    headers = sign_v4(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        {"Range": "bytes=0-9"},
        EXAMPLE_CREDS,
        "us-east-1",
        datetime(2013, 5, 24, tzinfo=UTC),
    )
    assert headers["Authorization"] == EXAMPLE_AUTH
    assert headers["x-amz-date"] == "20130524T000000Z"
    assert headers["Range"] == "bytes=0-9"


def test_sign_v4_changes_with_secret_and_session_token() -> None:
    args = (
        "GET",
        "https://h/b/k",
        {},
        EXAMPLE_CREDS,
        "us-east-1",
        datetime(2013, 5, 24, tzinfo=UTC),
    )
    base = sign_v4(*args)["Authorization"]  # type: ignore[arg-type]
    other = Credentials(EXAMPLE_CREDS.access_key, "other", "tok")
    signed = sign_v4(
        "GET", "https://h/b/k", {}, other, "us-east-1", datetime(2013, 5, 24, tzinfo=UTC)
    )
    assert signed["Authorization"] != base
    assert signed["x-amz-security-token"] == "tok"
    assert "x-amz-security-token" in signed["Authorization"]


@pytest.mark.parametrize(
    ("url", "options", "env", "expected"),
    [
        ("http://127.0.0.1:9000/slugs/app/a.tar.gz", {}, {},
         ("http://127.0.0.1:9000", "slugs", "app/a.tar.gz", "us-east-1")),
        ("https://s3.eu-west-1.amazonaws.com/b/k", {}, {},
         ("https://s3.eu-west-1.amazonaws.com", "b", "k", "eu-west-1")),
        ("https://bkt.s3.amazonaws.com/dir/k.zip", {}, {"AWS_REGION": "us-west-2"},
         ("https://s3.amazonaws.com", "bkt", "dir/k.zip", "us-west-2")),
        ("http://h/b/k", {"region": "ap-south-1"}, {"AWS_REGION": "x"},
         ("http://h", "b", "k", "ap-south-1")),
        ("s3://bkt/key", {}, {"AWS_DEFAULT_REGION": "eu-north-1"},
         ("https://s3.eu-north-1.amazonaws.com", "bkt", "key", "eu-north-1")),
    ],
)  # fmt: skip
def test_parse_source_forms(
    url: str, options: dict[str, str], env: dict[str, str], expected: tuple[str, str, str, str]
) -> None:
    obj = parse_source(url, options, env)
    assert (obj.endpoint, obj.bucket, obj.key, obj.region) == expected


def test_parse_source_needs_bucket_and_key() -> None:
    with pytest.raises(ArtifactError, match="not a valid S3 URL"):
        parse_source("http://h/onlybucket", {}, {})


def test_credentials_prefer_options_then_agent_env() -> None:
    env = {"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "S", "AWS_SESSION_TOKEN": "T"}
    assert credentials({}, env) == Credentials("A", "S", "T")
    opts = {"aws_access_key_id": "o", "aws_access_key_secret": "s"}
    assert credentials(opts, env) == Credentials("o", "s", "")
    assert credentials({}, {"AWS_ACCESS_KEY_ID": "A"}) is None
