"""S3Storage against the real embedded S3 server process over HTTP."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from testsupport import ServerProcess, free_port

from nomadpaas.errors import InvalidInput, NotFound, StorageUnreachable
from nomadpaas.settings import Settings
from nomadpaas.storage import Storage
from nomadpaas.storage.s3 import MULTIPART_THRESHOLD_BYTES, S3Storage

KEY_ID, SECRET = "test-key", "test-secret"


def storage(s3: ServerProcess, bucket: str = "nomadpaas") -> S3Storage:
    return S3Storage(
        s3.url, bucket, region="us-east-1", access_key_id=KEY_ID, secret_access_key=SECRET
    )


def test_round_trip_put_get_head_exists_list_delete(s3: ServerProcess, tmp_path: Path) -> None:
    store = storage(s3)
    assert isinstance(store, Storage)
    store.ensure_bucket()
    store.put_bytes("builds/web/b1.json", b'{"ok":true}', content_type="application/json",
                    metadata={"app": "web"})  # fmt: skip
    src = tmp_path / "src.tar.gz"
    src.write_bytes(os.urandom(100_000))
    store.put_file("sources/web/a.tar.gz", src)

    info = store.head("builds/web/b1.json")
    assert (info.size, info.content_type, dict(info.metadata)) == (
        11,
        "application/json",
        {"app": "web"},
    )
    assert store.get_bytes("builds/web/b1.json") == b'{"ok":true}'
    assert store.exists("sources/web/a.tar.gz") and not store.exists("sources/web/zz")
    store.get_file("sources/web/a.tar.gz", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == src.read_bytes()
    listed = store.list_prefix("sources/")
    assert [(o.key, o.size) for o in listed] == [("sources/web/a.tar.gz", 100_000)]

    store.delete("builds/web/b1.json")
    store.delete("builds/web/b1.json")  # deleting twice is fine (S3 semantics)
    assert not store.exists("builds/web/b1.json")
    store.put_bytes("slugs/web/1", b"1")
    store.put_bytes("slugs/web/2", b"2")
    assert store.delete_prefix("slugs/web/") == 2
    assert [o.key for o in store.list_prefix("")] == ["sources/web/a.tar.gz"]


def test_multipart_upload_reports_progress_up_to_the_size(
    s3: ServerProcess, tmp_path: Path
) -> None:
    store = storage(s3)
    store.ensure_bucket()
    size = MULTIPART_THRESHOLD_BYTES * 2 + 12345
    src = tmp_path / "slug.tar.gz"
    src.write_bytes(os.urandom(size))
    calls: list[tuple[int, int]] = []
    store.put_file(
        "slugs/web/big.tar.gz", src, on_progress=lambda done, total: calls.append((done, total))
    )

    assert len(calls) > 3
    assert {total for _, total in calls} == {size}
    assert calls[-1] == (size, size)
    assert all(0 <= done <= size for done, _ in calls)
    info = store.head("slugs/web/big.tar.gz")
    assert info.size == size
    assert info.etag.endswith("-3")  # three parts: it really went up as a multipart upload
    down: list[tuple[int, int]] = []
    store.get_file(
        "slugs/web/big.tar.gz", tmp_path / "down", on_progress=lambda d, t: down.append((d, t))
    )
    assert down[-1] == (size, size)
    assert (tmp_path / "down").read_bytes() == src.read_bytes()


def test_presigned_put_then_get_work_without_credentials(s3: ServerProcess) -> None:
    store = storage(s3)
    store.ensure_bucket()
    put_url = store.presign_put(
        "slugs/web/p.tar.gz", expires_s=300, content_type="application/gzip"
    )
    assert "X-Amz-Signature=" in put_url and "X-Amz-Expires=300" in put_url  # SigV4
    assert (
        httpx.put(
            put_url, content=b"slug-bytes", headers={"Content-Type": "application/gzip"}
        ).status_code
        == 200
    )
    get_url = store.presign_get("slugs/web/p.tar.gz", expires_s=300)
    r = httpx.get(get_url)
    assert (r.status_code, r.content) == (200, b"slug-bytes")
    assert store.head("slugs/web/p.tar.gz").content_type == "application/gzip"


def test_ensure_bucket_is_idempotent(s3: ServerProcess) -> None:
    store = storage(s3, "fresh-bucket")
    store.ensure_bucket()
    store.ensure_bucket()
    storage(s3, "fresh-bucket").ensure_bucket()
    store.put_bytes("k", b"v")
    assert store.get_bytes("k") == b"v"


def test_missing_object_and_missing_bucket_are_not_found(s3: ServerProcess, tmp_path: Path) -> None:
    store = storage(s3)
    store.ensure_bucket()
    with pytest.raises(NotFound, match="s3://nomadpaas/slugs/web/none"):
        store.get_bytes("slugs/web/none")
    with pytest.raises(NotFound):
        store.head("slugs/web/none")
    with pytest.raises(NotFound):
        store.get_file("slugs/web/none", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(InvalidInput, match="Cannot read"):
        store.put_file("slugs/web/none", tmp_path / "no-such-local-file")
    with pytest.raises(NotFound, match="Bucket no-such-bucket does not exist"):
        storage(s3, "no-such-bucket").get_bytes("k")
    with pytest.raises(NotFound, match="Bucket no-such-bucket does not exist"):
        storage(s3, "no-such-bucket").exists("k")  # not False: nothing could be uploaded there


def test_from_settings_uses_the_settings_endpoint_bucket_and_credentials(s3: ServerProcess) -> None:
    env = {
        "NOMADPAAS_S3_ENDPOINT": s3.url,
        "NOMADPAAS_S3_BUCKET": "from-settings",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_REGION": "us-east-1",
        "NOMADPAAS_HOME": "/nonexistent",
    }
    store = S3Storage.from_settings(Settings.from_env(env))
    assert (store.endpoint_url, store.bucket) == (s3.url, "from-settings")
    store.ensure_bucket()
    store.put_bytes("x", b"y")
    assert storage(s3, "from-settings").get_bytes("x") == b"y"


def test_unreachable_endpoint_fails_fast_naming_the_endpoint() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = S3Storage(
        endpoint,
        "nomadpaas",
        max_attempts=2,
        connect_timeout_s=1,
        read_timeout_s=2,
        access_key_id=KEY_ID,
        secret_access_key=SECRET,
    )
    started = time.monotonic()
    with pytest.raises(StorageUnreachable) as info:
        store.ensure_bucket()
    assert time.monotonic() - started < 10
    err = info.value
    assert endpoint in err.message and err.exit_code == 6
    assert err.hint and "nomadpaas up" in err.hint
    assert err.__cause__ is None and err.__suppress_context__  # no botocore traceback attached
    with pytest.raises(StorageUnreachable, match=endpoint):
        store.put_bytes("k", b"v")


def test_copy_is_server_side_keeps_type_and_metadata_and_reports_the_etag(
    s3: ServerProcess, tmp_path: Path
) -> None:
    store = storage(s3)
    store.ensure_bucket()
    src = tmp_path / "slug.tar.gz"
    src.write_bytes(os.urandom(300_000))
    store.put_file("slugs/web/staging/b1.tar.gz", src, content_type="application/gzip",
                   metadata={"build": "b1"})  # fmt: skip
    info = store.copy("slugs/web/staging/b1.tar.gz", "slugs/web/final.tar.gz")
    assert info.key == "slugs/web/final.tar.gz"
    assert info.etag == hashlib.md5(src.read_bytes(), usedforsecurity=False).hexdigest()
    copied = store.head("slugs/web/final.tar.gz")
    assert (copied.size, copied.content_type, dict(copied.metadata)) == (
        300_000,
        "application/gzip",
        {"build": "b1"},
    )
    assert store.get_bytes("slugs/web/final.tar.gz") == src.read_bytes()
    with pytest.raises(NotFound):
        store.copy("slugs/web/missing.tar.gz", "slugs/web/other.tar.gz")
    assert not store.exists("slugs/web/other.tar.gz")


def test_a_copied_object_survives_a_sigkill_of_the_server(s3: ServerProcess) -> None:
    store = storage(s3)
    store.ensure_bucket()
    store.put_bytes("a", b"the bytes")
    store.copy("a", "b")
    s3.kill(signal.SIGKILL)
    s3.start()
    assert storage(s3).get_bytes("b") == b"the bytes"


def test_a_miss_costs_one_request_once_the_bucket_answered(s3: ServerProcess) -> None:
    store = storage(s3)
    store.ensure_bucket()
    calls: list[str] = []
    store._client.meta.events.register("before-call", lambda **kw: calls.append(kw["model"].name))
    assert not store.exists("sources/web/none.tar.gz")
    assert calls == ["HeadObject"]  # no HeadBucket: the bucket already answered
    fresh = storage(s3)
    fresh._client.meta.events.register("before-call", lambda **kw: calls.append(kw["model"].name))
    calls.clear()
    assert not fresh.exists("sources/web/none.tar.gz")
    assert calls == ["HeadObject", "HeadBucket"]  # a new store tells key from bucket


def test_a_small_file_goes_up_in_one_put_with_its_type_metadata_and_progress(
    s3: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = storage(s3)
    store.ensure_bucket()
    src = tmp_path / "src.tar.gz"
    src.write_bytes(os.urandom(3_000))
    # Below the multipart threshold no transfer manager is involved (its threads and
    # futures cost more than the request itself).
    client = store._client
    monkeypatch.setattr(client, "upload_file", lambda *a, **k: pytest.fail("transfer used"))
    calls: list[tuple[int, int]] = []
    store.put_file(
        "sources/web/s.tar.gz",
        src,
        content_type="application/gzip",
        metadata={"app": "web"},
        on_progress=lambda d, t: calls.append((d, t)),
    )
    assert store.get_bytes("sources/web/s.tar.gz") == src.read_bytes()
    info = store.head("sources/web/s.tar.gz")
    assert (info.content_type, dict(info.metadata)) == ("application/gzip", {"app": "web"})
    assert info.etag == hashlib.md5(src.read_bytes(), usedforsecurity=False).hexdigest()
    assert calls == [(3_000, 3_000)]


def test_put_file_if_absent_leaves_an_existing_object_alone(
    s3: ServerProcess, tmp_path: Path
) -> None:
    store = storage(s3)
    store.ensure_bucket()
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    assert store.put_file("sources/web/x.tar.gz", first, if_absent=True) is True
    # One conditional PUT (If-None-Match: *): refused, nothing overwritten.
    assert store.put_file("sources/web/x.tar.gz", second, if_absent=True) is False
    assert store.get_bytes("sources/web/x.tar.gz") == b"first"
    assert store.put_file("sources/web/x.tar.gz", second) is True  # unconditional
    assert store.get_bytes("sources/web/x.tar.gz") == b"second"
    # Above the multipart threshold it looks first instead.
    big = S3Storage(s3.url, "nomadpaas", region="us-east-1", access_key_id=KEY_ID,
                    secret_access_key=SECRET, multipart_threshold=4)  # fmt: skip
    assert big.put_file("sources/web/x.tar.gz", first, if_absent=True) is False
    assert store.get_bytes("sources/web/x.tar.gz") == b"second"


def test_a_source_upload_creates_a_missing_bucket(s3: ServerProcess, tmp_path: Path) -> None:
    from nomadpaas.build import _Events, _upload

    store = storage(s3, bucket="fresh-bucket")
    src = tmp_path / "src.tar.gz"
    src.write_bytes(b"source bytes")
    kinds: list[str] = []
    events = _Events(lambda e: kinds.append(e.kind))
    assert _upload(store, "sources/web/a.tar.gz", src, 12, events) is True
    assert store.get_bytes("sources/web/a.tar.gz") == b"source bytes"
    assert kinds == ["upload", "upload", "uploaded"]
    kinds.clear()
    assert _upload(store, "sources/web/a.tar.gz", src, 12, events) is False
    assert kinds == []  # the caller says the source exists; no upload events


def test_close_drops_the_connections_and_a_later_request_reopens_them(
    s3: ServerProcess,
) -> None:
    store = storage(s3)
    store.ensure_bucket()
    store.put_bytes("builds/web/closed.json", b"1")
    pool = store._client._endpoint.http_session._manager  # botocore's urllib3 pools
    assert len(pool.pools) == 1
    store.close()
    assert len(pool.pools) == 0  # the keep-alive connection is gone
    assert store.get_bytes("builds/web/closed.json") == b"1"
