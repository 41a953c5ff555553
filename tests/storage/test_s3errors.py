"""Unit tests: botocore failures become typed nomadpaas errors without a traceback."""

from __future__ import annotations

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from nomadpaas.errors import NomadPaasError, NotFound, PermissionDenied, StorageUnreachable
from nomadpaas.storage.s3 import _translated

ENDPOINT = "http://127.0.0.1:9"


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},  # type: ignore[typeddict-item]
        "GetObject",
    )


def raise_inside(exc: BaseException) -> NomadPaasError:
    with (
        pytest.raises(NomadPaasError) as info,
        _translated(ENDPOINT, "read s3://b/k", bucket="b", key="k"),
    ):
        raise exc
    assert info.value.__cause__ is None and info.value.__suppress_context__
    return info.value


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (EndpointConnectionError(endpoint_url=ENDPOINT), StorageUnreachable, [ENDPOINT]),
        (NoCredentialsError(), StorageUnreachable, ["AWS_ACCESS_KEY_ID"]),
        (client_error("InvalidAccessKeyId", 403), StorageUnreachable, ["AWS_SECRET_ACCESS_KEY"]),
        (client_error("SignatureDoesNotMatch", 403), StorageUnreachable, ["AWS_ACCESS_KEY_ID"]),
        (client_error("AccessDenied", 403), PermissionDenied, ["AWS_PROFILE"]),
        (client_error("NoSuchKey", 404), NotFound, ["s3://b/k"]),
        (client_error("NoSuchBucket", 404), NotFound, ["Bucket b", "NOMADPAAS_S3_BUCKET"]),
        (client_error("SlowDown", 503), StorageUnreachable, [ENDPOINT, "503"]),
        (client_error("InvalidArgument", 400), NomadPaasError, [ENDPOINT, "InvalidArgument"]),
    ],
)
def test_botocore_errors_are_translated(exc: BaseException, kind: type, words: list[str]) -> None:
    err = raise_inside(exc)
    assert type(err) is kind
    text = f"{err.message} {err.hint}"
    for word in words:
        assert word in text


def test_upload_failure_wrapping_a_client_error_is_unwrapped() -> None:
    # boto3 raises S3UploadFailedError while handling the ClientError (implicit context).
    wrapped = S3UploadFailedError("Failed to upload x to b/k: An error occurred (NoSuchBucket)")
    wrapped.__context__ = client_error("NoSuchBucket", 404)
    err = raise_inside(wrapped)
    assert isinstance(err, NotFound) and "Bucket b" in err.message
