"""HttpTransfer's ETags against the real S3 server: a PUT says the new ETag, and a GET
with If-None-Match on a presigned URL answers 304 while the object is unchanged."""

from __future__ import annotations

from pathlib import Path

from testsupport import ServerProcess, bucket_storage

from nomadpaas.slugbuilder.http_transfer import Fetched, HttpTransfer

KEY = "cache/web/nomadpaas-1.tar.gz"


def test_conditional_get_on_a_presigned_url(s3: ServerProcess, tmp_path: Path) -> None:
    store = bucket_storage(s3.url)
    store.ensure_bucket()
    get, put = store.presign_get(KEY), store.presign_put(KEY)
    dest = tmp_path / "got"
    with HttpTransfer() as transfer:
        assert transfer.fetch_tagged(get, dest, '"whatever"') == Fetched("missing")
        src = tmp_path / "v1"
        src.write_bytes(b"one")
        etag = transfer.store(src, put)
        assert etag and etag.startswith('"')

        fetched = transfer.fetch_tagged(get, dest)
        assert fetched == Fetched("fetched", etag) and dest.read_bytes() == b"one"
        dest.unlink()
        assert transfer.fetch_tagged(get, dest, etag) == Fetched("not-modified", etag)
        assert not dest.exists()  # a 304 writes nothing

        src.write_bytes(b"two")
        newer = transfer.store(src, put)
        assert newer and newer != etag
        assert transfer.fetch_tagged(get, dest, etag) == Fetched("fetched", newer)
        assert dest.read_bytes() == b"two"
