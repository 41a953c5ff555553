"""The embedded S3 server's shortcuts change no answer: compared with plain moto's."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from testsupport import ServerProcess, free_port

from nomadpaas.stack.s3server import copy_result_xml
from nomadpaas.storage.s3 import S3Storage

BUCKET = "answers"
RECORD = os.urandom(4096)  # a build record
SLUG = os.urandom(1024 * 1024 + 11)  # above the inline size: a data file, prewritten
#: A SigV4 header moto reads the account from (it checks no signature).
AUTH = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=k/20261129/us-east-1/s3/aws4_request, "
    "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" + "0" * 64,
    "x-amz-date": "20261129T000000Z",
    "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
}
#: Headers whose values differ between any two answers (ids, clocks).
VOLATILE = {"date", "last-modified", "x-amz-request-id", "x-amz-id-2", "x-amzn-requestid"}
_VOLATILE_XML = re.compile(rb"<(LastModified|RequestId|HostId)>[^<]*</\1>")


@pytest.fixture
def plain_moto(tmp_path: Path) -> Iterator[ServerProcess]:
    """moto's own server, unpatched: the reference for every answer."""
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = ServerProcess(argv, "/", port, tmp_path / "moto")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def conversation(url: str) -> list[tuple[int, dict[str, str], bytes]]:
    """The requests of a push (and a few around them), each answer normalized."""
    store = S3Storage(url, BUCKET, region="us-east-1", access_key_id="k", secret_access_key="s")
    record_etag = f'"{hashlib.md5(RECORD).hexdigest()}"'
    slug_etag = f'"{hashlib.md5(SLUG).hexdigest()}"'
    copy_from = {**AUTH, "x-amz-copy-source": f"{BUCKET}/slugs/staging.tgz"}
    steps: list[tuple[str, str, dict[str, str], bytes]] = [
        ("PUT", f"{url}/{BUCKET}", AUTH, b""),
        ("PUT", store.presign_put("builds/1.json"), {}, RECORD),
        ("PUT", store.presign_put("slugs/staging.tgz"), {}, SLUG),
        ("GET", store.presign_get("builds/1.json"), {"If-None-Match": record_etag}, b""),
        ("GET", store.presign_get("builds/1.json"), {"Origin": "http://example.com"}, b""),
        ("HEAD", f"{url}/{BUCKET}/slugs/staging.tgz", AUTH, b""),
        ("PUT", f"{url}/{BUCKET}/slugs/abc.tgz",
         {**copy_from, "x-amz-copy-source-if-match": slug_etag}, b""),
        ("PUT", f"{url}/{BUCKET}/slugs/sum.tgz",
         {**copy_from, "x-amz-checksum-algorithm": "CRC32"}, b""),
        ("PUT", f"{url}/{BUCKET}/builds/copy.json",
         {**AUTH, "x-amz-copy-source": f"/{BUCKET}/builds/1.json", "Origin": "http://x.test"},
         b""),
        ("DELETE", f"{url}/{BUCKET}/slugs/staging.tgz", AUTH, b""),
        ("GET", f"{url}/{BUCKET}/slugs/staging.tgz", AUTH, b""),
        ("HEAD", f"{url}/{BUCKET}/slugs/abc.tgz", AUTH, b""),
    ]  # fmt: skip
    answers = []
    with httpx.Client(timeout=60) as client:
        for method, target, headers, body in steps:
            r = client.request(method, target, headers=headers, content=body or None)
            kept = {k: v for k, v in r.headers.items() if k not in VOLATILE}
            kept["last-modified"] = "present" if "last-modified" in r.headers else "absent"
            answers.append((r.status_code, kept, _VOLATILE_XML.sub(rb"<\1/>", r.content)))
    return answers


def test_answers_are_plain_moto_s(s3: ServerProcess, plain_moto: ServerProcess) -> None:
    ours, theirs = conversation(s3.url), conversation(plain_moto.url)
    assert [a[0] for a in ours] == [200, 200, 200, 304, 200, 200, 200, 200, 200, 204, 404, 200]
    for step, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
        assert mine == reference, f"answer {step} differs"
    assert ours[6][2].startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<CopyObjectResult')


def moto_serializes(result: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    """What moto's botocore-model serializer makes of a CopyObject result."""
    from moto.core.responses import ActionContext, ActionResult
    from moto.core.serialize import get_serializer_class
    from moto.core.utils import get_service_model
    from moto.s3.responses import S3Response

    service = get_service_model("s3")
    context = ActionContext(
        service,
        service.operation_model("CopyObject"),
        get_serializer_class("s3", service.protocol),
        S3Response(),
    )
    return ActionResult(result).execute_result(context)  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("etag", "last_modified"),
    [
        ('"d41d8cd98f00b204e9800998ecf8427e"', "2026-11-29T02:20:01.000Z"),
        ('"0123456789abcdef0123456789abcdef-12"', "1999-12-31T23:59:59.000Z"),
        ('"ffffffffffffffffffffffffffffffff"', "2030-02-28T00:00:00.000Z"),
    ],
)
def test_copy_result_xml_is_moto_s_serialization(etag: str, last_modified: str) -> None:
    result = {"CopyObjectResult": {"ETag": etag, "LastModified": last_modified}}
    assert moto_serializes(result) == (
        200,
        {"Content-Type": "application/xml"},
        copy_result_xml(result),
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"ETag": '"d41d8cd98f00b204e9800998ecf8427e"', "LastModified": "2026-11-29T02:20:01.000Z",
         "ChecksumCRC32": "AAAAAA=="},
        {"ETag": '"<&>"', "LastModified": "2026-11-29T02:20:01.000Z"},
        {"ETag": "d41d8cd98f00b204e9800998ecf8427e", "LastModified": "2026-11-29T02:20:01.000Z"},
        {"ETag": '"d41d8cd98f00b204e9800998ecf8427e"', "LastModified": "2026-11-29T02:20:01.123Z"},
        {"ETag": '"d41d8cd98f00b204e9800998ecf8427e"', "LastModified": "2026-11-29 02:20:01"},
    ],
)  # fmt: skip
def test_copy_result_xml_leaves_anything_else_to_moto(fields: dict[str, str]) -> None:
    assert copy_result_xml({"CopyObjectResult": fields}) is None
    assert copy_result_xml({"CopyPartResult": fields}) is None
