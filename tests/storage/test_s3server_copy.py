"""CopyObject on the embedded S3 server: shared data files, and the source's if-match."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from testsupport import ServerProcess

from nomadpaas.errors import Conflict
from nomadpaas.stack.s3persist import key_hash
from nomadpaas.storage.s3 import S3Storage

BUCKET = "nomadpaas"
SLUG = os.urandom(600 * 1024)
MD5 = hashlib.md5(SLUG).hexdigest()


def client(s3: ServerProcess) -> Any:
    return boto3.client(
        "s3", endpoint_url=s3.url, region_name="us-east-1", aws_access_key_id="k",
        aws_secret_access_key="s", config=Config(s3={"addressing_style": "path"}),
    )  # fmt: skip


def storage(s3: ServerProcess) -> S3Storage:
    return S3Storage(s3.url, BUCKET, region="us-east-1", access_key_id="k", secret_access_key="s")


def data_file(s3: ServerProcess, key: str) -> Path:
    """The data file the server's record of `key` names."""
    bdir = s3.data_dir / "objects" / BUCKET
    record = json.loads((bdir / f"{key_hash(key)}.json").read_text(encoding="utf-8"))
    return bdir / str(record["Data"])


def test_a_copy_shares_the_data_file_and_survives_deleting_its_source(
    s3: ServerProcess,
) -> None:
    store = storage(s3)
    store.ensure_bucket()
    store.put_bytes("slugs/web/staging/1.tar.gz", SLUG, content_type="application/gzip")
    copied = store.copy("slugs/web/staging/1.tar.gz", "slugs/web/abc.tar.gz", if_match=MD5)
    assert copied.etag == MD5
    source, copy = (
        data_file(s3, "slugs/web/staging/1.tar.gz"),
        data_file(s3, "slugs/web/abc.tar.gz"),
    )
    assert source != copy and source.stat().st_ino == copy.stat().st_ino
    assert copy.stat().st_nlink == 2
    assert store.head("slugs/web/abc.tar.gz").content_type == "application/gzip"
    # A copy onto itself that replaces the metadata links its own bytes anew.
    client(s3).copy_object(
        Bucket=BUCKET, Key="slugs/web/abc.tar.gz", MetadataDirective="REPLACE",
        CopySource={"Bucket": BUCKET, "Key": "slugs/web/abc.tar.gz"}, Metadata={"v": "2"},
    )  # fmt: skip
    store.delete("slugs/web/staging/1.tar.gz")
    assert data_file(s3, "slugs/web/abc.tar.gz").stat().st_nlink == 1
    s3.kill(signal.SIGKILL)
    s3.start()
    assert store.get_bytes("slugs/web/abc.tar.gz") == SLUG
    head = store.head("slugs/web/abc.tar.gz")
    assert (head.etag, head.size, dict(head.metadata)) == (MD5, len(SLUG), {"v": "2"})
    assert not store.exists("slugs/web/staging/1.tar.gz")


def test_a_copy_whose_source_etag_differs_gets_412_and_writes_nothing(
    s3: ServerProcess,
) -> None:
    store = storage(s3)
    store.ensure_bucket()
    store.put_bytes("staging", SLUG)
    store.put_bytes("taken", b"already here")
    with pytest.raises(Conflict):
        store.copy("staging", "fresh", if_match="0" * 32)
    with pytest.raises(ClientError) as refused:
        client(s3).copy_object(
            Bucket=BUCKET, Key="taken", CopySource={"Bucket": BUCKET, "Key": "staging"},
            CopySourceIfMatch='"0123"',
        )  # fmt: skip
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert not store.exists("fresh") and store.get_bytes("taken") == b"already here"
    assert not (s3.data_dir / "objects" / BUCKET / f"{key_hash('fresh')}.json").exists()
    assert store.copy("staging", "fresh", if_match=MD5).etag == MD5  # the right ETag copies
    s3.kill(signal.SIGKILL)
    s3.start()
    assert store.get_bytes("fresh") == SLUG and store.get_bytes("taken") == b"already here"


def test_a_copy_of_a_multipart_object_keeps_moto_s_etag(s3: ServerProcess, tmp_path: Path) -> None:
    store = storage(s3)
    store.ensure_bucket()
    big = os.urandom(20 * 1024 * 1024 + 5)
    (tmp_path / "big").write_bytes(big)
    store.put_file("big", tmp_path / "big")
    assert store.head("big").etag.endswith("-3")
    copied = store.copy("big", "big-copy")
    assert copied.etag == hashlib.md5(big).hexdigest()  # what moto answers for such a copy
    assert store.head("big-copy").etag == copied.etag
    s3.kill(signal.SIGKILL)
    s3.start()  # restored objects carry their ETag, not moto's multipart bookkeeping
    assert store.copy("big", "big-again").etag == copied.etag
