"""Early GETs (early.py): sent before the task's imports, read by HttpTransfer when the
build asks for the same request; anything unusable is asked again, with the same errors."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nomadpaas.slugbuilder.early import EarlyRequests, send_early_requests
from nomadpaas.slugbuilder.http_transfer import Fetched, HttpTransfer, TransferError
from nomadpaas.slugbuilder.payload import PAYLOAD_FILE

ETAG = '"v1"'


class Objects(ThreadingHTTPServer):
    """Serves `bodies` by path with ETag "v1"; `statuses` (per path) are answered first,
    one per request; every request is logged as (path, If-None-Match)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: dict[str, bytes] = {}
        self.statuses: dict[str, list[int]] = {}
        self.log: list[tuple[str, str | None]] = []
        self.stored: dict[str, bytes] = {}
        #: path -> a path whose request must have arrived before it is answered.
        self.hold: dict[str, str] = {}
        self.held_ok: dict[str, bool] = {}
        self.arrived = threading.Condition()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        return  # a client that closed an unread early request: nothing to report


class _Handler(BaseHTTPRequestHandler):
    server: Objects

    def do_GET(self) -> None:  # the stdlib's name
        path = self.path.split("?", 1)[0]
        inm = self.headers.get("If-None-Match")
        with self.server.arrived:
            self.server.log.append((path, inm))
            self.server.arrived.notify_all()
        if path in self.server.hold:
            other = self.server.hold[path]
            with self.server.arrived:
                self.server.held_ok[path] = self.server.arrived.wait_for(
                    lambda: any(p == other for p, _ in self.server.log), timeout=10.0
                )
        queued = self.server.statuses.get(path)
        status = queued.pop(0) if queued else None
        body = self.server.bodies.get(path)
        if status is None:
            status = 404 if body is None else 304 if inm == ETAG else 200
        payload = body if status == 200 and body is not None else b""
        self.send_response(status)
        self.send_header("ETag", ETAG)
        if status != 304:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_PUT(self) -> None:  # the stdlib's name
        length = int(self.headers.get("Content-Length", "0"))
        self.server.stored[self.path.split("?", 1)[0]] = self.rfile.read(length)
        self.send_response(200)
        self.send_header("ETag", '"put"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


def _sent(url: str, if_none_match: str | None = None) -> EarlyRequests:
    """Early requests holding one GET of `url`, sent (the test's server is up)."""
    early = EarlyRequests()
    assert early.send(url, if_none_match)
    return early


@pytest.fixture
def objects() -> Iterator[Objects]:
    server = Objects()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def test_a_fetch_reads_the_early_answer_instead_of_asking_again(
    objects: Objects, tmp_path: Path
) -> None:
    objects.bodies["/src"] = b"source bytes"
    url = f"{objects.url}/src?X-Amz-Signature=s"
    early = _sent(url)
    with HttpTransfer(early=early) as transfer:
        assert transfer.fetch_tagged(url, tmp_path / "got") == Fetched("fetched", ETAG)
        assert (tmp_path / "got").read_bytes() == b"source bytes"
        assert objects.log == [("/src", None)]  # one request: the early one
        assert early.pending() == []
        # Taken once: the next fetch of the same URL asks again.
        assert transfer.fetch(url, tmp_path / "again")
    assert objects.log == [("/src", None), ("/src", None)]


def test_an_early_conditional_get_is_used_only_for_the_same_etag(
    objects: Objects, tmp_path: Path
) -> None:
    objects.bodies["/cache"] = b"cache"
    url = f"{objects.url}/cache"
    early = _sent(url, ETAG)
    with HttpTransfer(early=early) as transfer:
        # The build asks with another ETag: the early answer is not its answer.
        assert transfer.fetch_tagged(url, tmp_path / "c", '"old"') == Fetched("fetched", ETAG)
        assert early.pending() == [(url, ETAG)]
        assert transfer.fetch_tagged(url, tmp_path / "c2", ETAG) == Fetched("not-modified", ETAG)
        assert not (tmp_path / "c2").exists()
    assert sorted(objects.log) == [("/cache", '"old"'), ("/cache", ETAG)]
    assert early.pending() == []


def test_a_missing_object_is_an_early_answer_too(objects: Objects, tmp_path: Path) -> None:
    url = f"{objects.url}/none"
    early = _sent(url)
    with HttpTransfer(early=early) as transfer:
        assert transfer.fetch_tagged(url, tmp_path / "x") == Fetched("missing")
    assert objects.log == [("/none", None)]


def test_an_unusable_early_answer_is_asked_again(objects: Objects, tmp_path: Path) -> None:
    objects.bodies["/src"] = b"ok"
    objects.statuses["/src"] = [503]  # the early request meets a restarting S3
    url = f"{objects.url}/src"
    early = _sent(url)
    with HttpTransfer(early=early) as transfer:
        assert transfer.fetch(url, tmp_path / "got")
    assert (tmp_path / "got").read_bytes() == b"ok"
    assert objects.log == [("/src", None), ("/src", None)]


def test_a_failing_early_request_fails_as_the_build_s_own_request_would(
    objects: Objects, tmp_path: Path
) -> None:
    objects.bodies["/src"] = b"ok"
    url = f"{objects.url}/src?X-Amz-Signature=secret"
    errors = []
    for early in (None, EarlyRequests()):
        objects.statuses["/src"] = [403, 403]
        if early is not None:
            early.send(url)
        with HttpTransfer(early=early) as transfer, pytest.raises(TransferError) as caught:
            transfer.fetch(url, tmp_path / "got")
        errors.append(str(caught.value))
    assert errors[0] == errors[1] == f"GET {objects.url}/src failed with HTTP 403"
    assert not (tmp_path / "got").exists()


def test_an_early_request_that_cannot_connect_is_not_kept() -> None:
    early = EarlyRequests()
    assert not early.send("http://127.0.0.1:9/src")  # refused: the build asks itself
    assert early.pending() == []


def test_an_early_answer_that_cannot_be_read_is_asked_again(
    objects: Objects, tmp_path: Path
) -> None:
    objects.bodies["/src"] = b"ok"
    url = f"{objects.url}/src"
    early = _sent(url)
    early._sent[(url, None)].shutdown(socket.SHUT_RD)  # as if reset
    with HttpTransfer(early=early) as transfer:
        assert transfer.fetch(url, tmp_path / "got")
    assert (tmp_path / "got").read_bytes() == b"ok"
    assert objects.log[-1] == ("/src", None)


def _meta_env(objects: Objects, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "NOMAD_META_app": "web",
        "NOMAD_META_stack": "nomadpaas-1",
        "NOMAD_META_source_url": f"{objects.url}/src?sig=1",
        "NOMAD_META_config_url": f"{objects.url}/config?sig=2",
        "NOMAD_META_cache_url": f"{objects.url}/cache/web?sig=3",
        "NOMADPAAS_BUILD_CACHE_DIR": str(tmp_path / "node"),
        **extra,
    }


def _slot(tmp_path: Path, obj: str, etag: str) -> None:
    slot = tmp_path / "node" / "web" / "nomadpaas-1"
    (slot / "tree").mkdir(parents=True)
    (slot / "tag").write_text(json.dumps({"object": obj, "etag": etag, "bytes": 1}))


def test_the_task_s_gets_are_sent_from_the_meta(objects: Objects, tmp_path: Path) -> None:
    env = _meta_env(objects, tmp_path)
    with closing(send_early_requests(env)) as early:
        assert sorted(early.pending()) == sorted(
            [(env["NOMAD_META_source_url"], None), (env["NOMAD_META_config_url"], None),
             (env["NOMAD_META_cache_url"], None)]
        )  # fmt: skip
    assert early.pending() == []


def test_the_cache_get_carries_the_slot_s_etag_only_for_its_object(
    objects: Objects, tmp_path: Path
) -> None:
    env = _meta_env(objects, tmp_path)
    _slot(tmp_path, f"{objects.url}/cache/web", ETAG)
    with closing(send_early_requests(env)) as early:
        assert (env["NOMAD_META_cache_url"], ETAG) in early.pending()
    other = _meta_env(objects, tmp_path, NOMAD_META_cache_url=f"{objects.url}/cache/other")
    with closing(send_early_requests(other)) as early:
        assert (f"{objects.url}/cache/other", None) in early.pending()


def test_nothing_is_sent_without_meta_and_bad_urls_are_skipped() -> None:
    assert send_early_requests({}).pending() == []
    early = send_early_requests({"NOMAD_META_source_url": "ftp://nowhere/x"})
    assert early.pending() == []


def test_the_task_sends_its_gets_before_it_needs_the_answers(
    objects: Objects, tmp_path: Path
) -> None:
    # The source is answered only once the cache's request has arrived: a task that
    # asked for them one after the other would wait 10 s and see its source refused.
    app = tmp_path / "app"
    app.mkdir()
    (app / "Procfile").write_text("web: echo hi\n")
    source = io.BytesIO()
    with tarfile.open(fileobj=source, mode="w:gz") as tar:
        tar.add(app / "Procfile", arcname="Procfile")
    objects.bodies["/src"] = source.getvalue()
    objects.hold["/src"] = "/cache"
    objects.statuses["/src"] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOMAD", "PYTHON"))}
    env.update(
        NOMAD_META_app="web",
        NOMAD_META_build_id="b1",
        NOMAD_META_stack="nomadpaas-1",
        NOMAD_META_source_url=f"{objects.url}/src?sig=1",
        NOMAD_META_slug_url=f"{objects.url}/slug?sig=2",
        NOMAD_META_metadata_url=f"{objects.url}/record?sig=3",
        NOMAD_META_cache_url=f"{objects.url}/cache?sig=4",
        NOMAD_TASK_DIR=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, "-I", "-m", "nomadpaas.slugbuilder", "task"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert objects.held_ok == {"/src": True}
    assert "-----> Build succeeded" in done.stdout.splitlines()
    assert json.loads(objects.stored["/record"])["status"] == "succeeded"
    # Each GET was made once: the build read the early answers.
    assert sorted(objects.log) == [("/cache", None), ("/src", None)]


def test_no_source_get_when_the_source_came_as_the_dispatch_payload(
    objects: Objects, tmp_path: Path
) -> None:
    task_dir = tmp_path / "local"
    task_dir.mkdir()
    (task_dir / PAYLOAD_FILE).write_bytes(b"the source")
    env = {**_meta_env(objects, tmp_path), "NOMAD_TASK_DIR": str(task_dir)}
    with closing(send_early_requests(env)) as early:
        assert sorted(early.pending()) == sorted(
            [(env["NOMAD_META_config_url"], None), (env["NOMAD_META_cache_url"], None)]
        )
