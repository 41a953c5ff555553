"""HttpTransfer (the build task's presigned-URL transfer) against the real S3 server, and
the `task` entry's handling of its dispatch meta."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from testsupport import ServerProcess, bucket_storage

from nomadpaas.slugbuilder import http_transfer
from nomadpaas.slugbuilder.dispatched import main as task_main
from nomadpaas.slugbuilder.dispatched import read_meta
from nomadpaas.slugbuilder.http_transfer import HttpTransfer, TransferError
from nomadpaas.storage.s3 import S3Storage


def storage(s3: ServerProcess) -> S3Storage:
    store = bucket_storage(s3.url)
    store.ensure_bucket()
    return store


def test_presigned_put_then_get_round_trip(s3: ServerProcess, tmp_path: Path) -> None:
    store = storage(s3)
    payload = os.urandom(3 * 1024 * 1024 + 17)  # several read chunks
    src = tmp_path / "slug.tar.gz"
    src.write_bytes(payload)
    with HttpTransfer() as transfer:
        transfer.store(src, store.presign_put("slugs/web/staging/b1.tar.gz"))
        assert store.get_bytes("slugs/web/staging/b1.tar.gz") == payload
        dest = tmp_path / "nested" / "dir" / "back.tar.gz"
        assert transfer.fetch(store.presign_get("slugs/web/staging/b1.tar.gz"), dest) is True
    assert dest.read_bytes() == payload
    assert [p.name for p in dest.parent.iterdir()] == ["back.tar.gz"]  # no temp files left


def test_missing_object_is_false_and_a_refused_put_is_an_error(
    s3: ServerProcess, tmp_path: Path
) -> None:
    store = storage(s3)
    with HttpTransfer() as transfer:
        assert transfer.fetch(store.presign_get("cache/web/x.tar.gz"), tmp_path / "c") is False
        assert not (tmp_path / "c").exists()
        # moto does not check signatures; a missing bucket is its refusal we can provoke.
        elsewhere = S3Storage(s3.url, "no-such-bucket", region="us-east-1",
                              access_key_id="k", secret_access_key="s")  # fmt: skip
        url = elsewhere.presign_put("builds/web/b1.json")
        (tmp_path / "r.json").write_text("{}")
        with pytest.raises(TransferError) as info:
            transfer.store(tmp_path / "r.json", url)
    assert "X-Amz" not in str(info.value)  # the signature never lands in a log
    assert not store.exists("builds/web/b1.json")


def test_meta_comes_from_nomad_meta_env_either_case() -> None:
    env = {
        "NOMAD_META_app": "web",
        "NOMAD_META_BUILD_ID": "b1",
        "NOMAD_META_source_url": "http://s/src",
        "NOMAD_META_cache_url": "",  # optional meta Nomad sets to "" when not sent
    }
    assert read_meta(env) == {"app": "web", "build_id": "b1", "source_url": "http://s/src"}


def test_task_without_meta_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert task_main([], environ={"NOMAD_META_app": "web"}) == 2
    assert "NOMAD_META_source_url" in capsys.readouterr().out


def test_task_entry_runs_a_build_from_env(s3: ServerProcess, tmp_path: Path) -> None:
    """`python -m nomadpaas.slugbuilder task` as the job runs it: meta in the env."""
    import shutil
    import tarfile

    store = storage(s3)
    app = tmp_path / "app"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "shell-worker", app)
    src = tmp_path / "src.tar.gz"
    with tarfile.open(src, "w:gz") as tar:
        tar.add(app, arcname=".")
    store.put_file("sources/web/src.tar.gz", src)
    env = {
        **os.environ,
        "NOMAD_META_app": "web",
        "NOMAD_META_build_id": "b7",
        "NOMAD_META_source_url": store.presign_get("sources/web/src.tar.gz"),
        "NOMAD_META_slug_url": store.presign_put("slugs/web/staging/b7.tar.gz"),
        "NOMAD_META_metadata_url": store.presign_put("builds/web/b7.json"),
        "NOMAD_META_cache_url": store.presign_get("cache/web/nomadpaas-1.tar.gz"),
        "NOMAD_META_cache_put_url": store.presign_put("cache/web/nomadpaas-1.tar.gz"),
        "NOMAD_TASK_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "nomadpaas.slugbuilder", "task"],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("-----> ")
    assert "X-Amz-Signature" not in done.stdout + done.stderr
    record = json.loads(store.get_bytes("builds/web/b7.json"))
    assert record["status"] == "succeeded" and record["slug"]["process_types"]["web"]
    timings = record["timings"]  # seconds per phase, for the bench and for operators
    assert 0 < timings["startup"] < 60 and timings["compile"] > 0 and "pack_slug" in timings
    assert record["finished_at"] >= record["started_at"] and "." in record["finished_at"]
    assert store.exists("slugs/web/staging/b7.tar.gz")
    assert store.exists("cache/web/nomadpaas-1.tar.gz")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("nomadpaas-build-")] == []


class _Flaky(http.server.BaseHTTPRequestHandler):
    """503 first, then a redirect, then the object; PUTs are recorded (body and length)."""

    seen: ClassVar[list[str]] = []
    stored: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        self.seen.append(f"GET {self.path}")
        if self.path == "/obj?sig=1" and len(self.seen) == 1:
            self._reply(503, b"slow down")
        elif self.path == "/obj?sig=1":
            self.send_response(307)
            self.send_header("Location", "/moved?sig=2")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/moved?sig=2":
            self._reply(200, b"payload")
        else:
            self._reply(404, b"")

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        self.seen.append(f"PUT {self.path} {length} {self.headers.get('Transfer-Encoding')}")
        self.stored[self.path] = self.rfile.read(length)
        self._reply(200, b"")

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky_server() -> Iterator[str]:
    _Flaky.seen, _Flaky.stored = [], {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_fetch_retries_a_5xx_and_follows_redirects(
    flaky_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_transfer, "RETRY_DELAY_S", 0.01)
    transfer = HttpTransfer()
    assert transfer.fetch(f"{flaky_server}/obj?sig=1", tmp_path / "o") is True
    assert (tmp_path / "o").read_bytes() == b"payload"
    assert _Flaky.seen == ["GET /obj?sig=1", "GET /obj?sig=1", "GET /moved?sig=2"]
    assert transfer.fetch(f"{flaky_server}/none?sig=3", tmp_path / "n") is False


def test_store_sends_a_length_not_chunks(flaky_server: str, tmp_path: Path) -> None:
    payload = os.urandom(700 * 1024)  # several send blocks
    (tmp_path / "slug").write_bytes(payload)
    HttpTransfer().store(tmp_path / "slug", f"{flaky_server}/slug?sig=4")
    assert _Flaky.seen == [f"PUT /slug?sig=4 {len(payload)} None"]
    assert _Flaky.stored["/slug?sig=4"] == payload
