"""The embedded S3 server keeps every acknowledged write across SIGKILL and clean restarts."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
from botocore.config import Config
from testsupport import ServerProcess, run_concurrently

from nomadpaas.storage.s3 import MULTIPART_THRESHOLD_BYTES, S3Storage

KEY_ID, SECRET = "test-key", "test-secret"
ODD_KEYS = ["a b/c+d%2Fe", "dots/../..", "ü/ñ/日本.txt", "trailing/", "x" * 400]


def storage(s3: ServerProcess, bucket: str = "nomadpaas") -> S3Storage:
    return S3Storage(
        s3.url, bucket, region="us-east-1", access_key_id=KEY_ID, secret_access_key=SECRET
    )


def raw_client(s3: ServerProcess) -> Any:
    """A plain boto3 client, for operations S3Storage does not offer (copy, tagging)."""
    return boto3.client(
        "s3", endpoint_url=s3.url, region_name="us-east-1", aws_access_key_id="k",
        aws_secret_access_key="s", config=Config(s3={"addressing_style": "path"}),
    )  # fmt: skip


def write_everything(s3: ServerProcess, tmp_path: Path) -> dict[str, bytes]:
    """Objects of every kind the server must keep; returns key → bytes."""
    store = storage(s3)
    store.ensure_bucket()
    expected: dict[str, bytes] = {}
    small = b"hello small"
    store.put_bytes(
        "small.json", small, content_type="application/json", metadata={"release": "v3"}
    )
    expected["small.json"] = small
    big = os.urandom(MULTIPART_THRESHOLD_BYTES * 2 + 777)
    (tmp_path / "big").write_bytes(big)
    store.put_file("slugs/web/big.tar.gz", tmp_path / "big", metadata={"sha": "abc"})
    expected["slugs/web/big.tar.gz"] = big
    for i, key in enumerate(ODD_KEYS):
        expected[key] = f"odd {i}".encode()
        store.put_bytes(key, expected[key])
    url = store.presign_put("presigned/obj")
    assert httpx.put(url, content=b"via presigned url").status_code == 200
    expected["presigned/obj"] = b"via presigned url"
    client = raw_client(s3)
    post = client.generate_presigned_post("nomadpaas", "posted/form")  # browser-style POST
    r = httpx.post(post["url"], data=post["fields"], files={"file": ("f", b"form upload")})
    assert r.status_code == 204
    expected["posted/form"] = b"form upload"
    # Virtual-hosted style (bucket in the Host header): the server cannot tell the key
    # from the path alone and syncs everything.
    query = urlsplit(store.presign_put("virtual-hosted")).query
    r = httpx.put(f"{s3.url}/virtual-hosted?{query}", content=b"vh",
                  headers={"Host": "nomadpaas.s3.amazonaws.com"})  # fmt: skip
    assert r.status_code == 200
    expected["virtual-hosted"] = b"vh"
    client.copy_object(
        Bucket="nomadpaas", Key="copied", CopySource={"Bucket": "nomadpaas", "Key": "small.json"}
    )
    expected["copied"] = small
    client.put_object_tagging(
        Bucket="nomadpaas", Key="small.json", Tagging={"TagSet": [{"Key": "t", "Value": "1"}]}
    )
    store.put_bytes("overwritten", b"first")
    store.put_bytes("overwritten", b"second")
    expected["overwritten"] = b"second"
    store.put_bytes("deleted", b"gone soon")
    store.delete("deleted")
    store.put_bytes("batch/1", b"1")
    store.put_bytes("batch/2", b"2")
    assert store.delete_prefix("batch/") == 2  # DeleteObjects
    storage(s3, "second-bucket").ensure_bucket()
    storage(s3, "second-bucket").put_bytes("k", b"in another bucket")
    storage(s3, "empty-bucket").ensure_bucket()
    storage(s3, "short-lived").ensure_bucket()
    storage(s3, "short-lived").put_bytes("k", b"v")
    storage(s3, "short-lived").delete("k")
    raw_client(s3).delete_bucket(Bucket="short-lived")  # deleted buckets stay deleted
    return expected


def assert_everything_kept(s3: ServerProcess, expected: dict[str, bytes], tmp_path: Path) -> None:
    store = storage(s3)
    assert sorted(o.key for o in store.list_prefix("")) == sorted(expected)
    for key, data in expected.items():
        if len(data) > 1_000_000:
            store.get_file(key, tmp_path / "check")
            got = (tmp_path / "check").read_bytes()
        else:
            got = store.get_bytes(key)
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest(), key
    small = store.head("small.json")
    assert (small.content_type, dict(small.metadata)) == ("application/json", {"release": "v3"})
    big = store.head("slugs/web/big.tar.gz")
    assert big.etag.endswith("-3") and dict(big.metadata) == {"sha": "abc"}
    tags = raw_client(s3).get_object_tagging(Bucket="nomadpaas", Key="small.json")["TagSet"]
    assert tags == [{"Key": "t", "Value": "1"}]
    assert not store.exists("deleted") and not store.exists("batch/1")
    assert storage(s3, "second-bucket").get_bytes("k") == b"in another bucket"
    buckets = {b["Name"] for b in raw_client(s3).list_buckets()["Buckets"]}
    assert buckets == {"nomadpaas", "second-bucket", "empty-bucket"}


def test_acknowledged_writes_survive_sigkill(s3: ServerProcess, tmp_path: Path) -> None:
    expected = write_everything(s3, tmp_path)
    before = storage(s3).head("slugs/web/big.tar.gz")
    s3.kill(signal.SIGKILL)
    s3.start()
    assert_everything_kept(s3, expected, tmp_path)
    after = storage(s3).head("slugs/web/big.tar.gz")
    assert (after.etag, after.size, after.last_modified) == (
        before.etag,
        before.size,
        before.last_modified,
    )


def test_writes_survive_a_clean_sigterm_restart_and_a_second_crash(
    s3: ServerProcess, tmp_path: Path
) -> None:
    expected = write_everything(s3, tmp_path)
    s3.kill(signal.SIGTERM)
    assert s3.proc is not None and s3.proc.returncode == 0  # clean stop
    s3.start()
    assert_everything_kept(s3, expected, tmp_path)
    store = storage(s3)
    store.delete("copied")
    del expected["copied"]
    store.put_bytes("after-restart", b"new")
    expected["after-restart"] = b"new"
    s3.kill(signal.SIGKILL)
    s3.start()
    assert_everything_kept(s3, expected, tmp_path)


def test_concurrent_writers_are_all_kept(s3: ServerProcess) -> None:
    store = storage(s3)
    store.ensure_bucket()

    def writer(n: int) -> None:
        for i in range(6):
            store.put_bytes(f"w{n}/{i}", f"{n}-{i}".encode() * 1000)
            store.put_bytes("shared", f"{n}-{i}".encode())

    run_concurrently(writer, 6)
    last_shared = store.get_bytes("shared")
    s3.kill()
    s3.start()
    for n in range(6):
        for i in range(6):
            assert store.get_bytes(f"w{n}/{i}") == f"{n}-{i}".encode() * 1000
    assert store.get_bytes("shared") == last_shared


def test_second_server_on_the_same_data_dir_refuses_to_start(s3: ServerProcess) -> None:
    argv = [sys.executable, "-m", "nomadpaas.stack.s3server", "--bind", "127.0.0.1",
            "--port", "0", "--data-dir", str(s3.data_dir)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    assert done.returncode == 1
    assert b"in use by another S3 server" in done.stderr


def test_moto_admin_api_is_not_served(s3: ServerProcess) -> None:
    storage(s3).ensure_bucket()
    for path in ("/moto-api/reset", "/moto-api/recorder/start-recording"):
        httpx.post(s3.url + path)
    assert "nomadpaas" in {b["Name"] for b in raw_client(s3).list_buckets()["Buckets"]}
