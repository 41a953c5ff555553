"""The embedded stack's S3 server: moto's S3 made durable across restarts and crashes.

    python -m nomadpaas.stack.s3server --bind 127.0.0.1 --port 9000 --data-dir DIR

Serves moto's S3 Flask app in-process on werkzeug's threaded server, bound to `--bind`
only. `DurableApp` wraps it: after a mutating request (PUT, POST, DELETE) succeeds, and
before the 2xx answer reaches the client, the touched key (or bucket) is synced from
moto's memory to DIR by `s3mirror.Mirror` with fsync'ed writes (layout: `s3persist`).
So an acknowledged PutObject, CompleteMultipartUpload or CopyObject survives SIGKILL, a
clean stop and a reboot; deletes stay deleted. (A large object's data file is written
while moto still hashes it, `Mirror.prewrite`; the same sync commits it.) At start DIR is
loaded back into moto before the port opens, so "answers HTTP" means "holds everything
acknowledged before".
If persisting fails (disk full), the client gets a 500 InternalError and retries.

CopyObject honours `x-amz-copy-source-if-match` as S3 does (412, nothing copied), which
moto alone ignores, and its copy shares the source's stored data file (`patch_moto_copy`,
`s3mirror`). Its answer is written directly (`copy_result_xml`), byte for byte what moto's
botocore-model serializer gives, at a fraction of the cost. (The patches: s3patches.py.)

No authentication: moto accepts any credentials and never checks presigned URLs
(reference/tooling.md §2), so anyone who can reach the port can read and write every
object. That is why it binds loopback by default and the data dir should be private.
Only S3 is served; moto's `/moto-api` (reset, recorder) is not mounted.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlparse, urlsplit

from nomadpaas.stack.s3mirror import Mirror
from nomadpaas.stack.s3patches import copy_result_xml, patch_moto_copy
from nomadpaas.stack.s3patches import put_hook as _on_put
from nomadpaas.stack.s3persist import DataDirLocked, ObjectStore

__all__ = ["DurableApp", "copy_result_xml", "copy_source", "main", "request_target"]

log = logging.getLogger("nomadpaas.stack.s3server")

#: Requests that may change state; everything else is passed straight through.
MUTATING_METHODS = frozenset({"PUT", "POST", "DELETE"})
#: Objects up to this size are stored inside their sidecar: one fsync'ed file, not two.
INLINE_MAX_BYTES = 64 * 1024
#: On SIGTERM, in-flight writes get this long to finish persisting before exit (seconds).
DRAIN_TIMEOUT_S = 10.0

_PERSIST_FAILED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>The change could not be persisted; retry the request.</Message></Error>"
)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def request_target(environ: dict[str, Any]) -> tuple[str, str | None] | None:
    """(bucket, key or None) a path-style request names; None when it cannot tell.

    Mirrors moto's own parsing: the key is the percent-decoded raw path after the bucket
    (so an encoded `/` stays part of the key). Virtual-hosted requests (bucket in the
    Host) return None and make the caller sync everything.
    """
    host = str(environ.get("HTTP_HOST", "")).rsplit(":", 1)[0].strip("[]")
    path_style = (
        not host
        or host.startswith("localhost")
        or "." not in host
        or ":" in host  # IPv6 literal
        or host.replace(".", "").isdigit()  # IPv4 literal
    )
    if not path_style:
        return None
    raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or "")
    raw = urlsplit(raw).path if "://" in raw else raw.split("?", 1)[0]
    if not raw:
        raw = str(environ.get("PATH_INFO", "/"))
    parts = unquote(raw).split("/")
    bucket = parts[1] if len(parts) > 1 else ""
    if not bucket:
        return None
    key = "/".join(parts[2:])
    return bucket, (key or None)


def copy_source(environ: dict[str, Any]) -> tuple[str, str] | None:
    """(bucket, key) a CopyObject request copies from, parsed as moto does; else None."""
    header = environ.get("HTTP_X_AMZ_COPY_SOURCE")
    if not header or environ.get("REQUEST_METHOD") != "PUT":
        return None
    if "uploadId=" in str(environ.get("QUERY_STRING", "")):
        return None  # UploadPartCopy: the key itself does not change yet
    parts = unquote(urlparse(str(header)).path).lstrip("/").split("/", 1)
    return (parts[0], parts[1]) if len(parts) == 2 and parts[0] and parts[1] else None


class DurableApp:
    """WSGI middleware: persist the effect of every successful mutating request first."""

    def __init__(self, app: WSGIApp, mirror: Mirror) -> None:
        self._app = app
        self._mirror = mirror
        self._inflight = 0
        self._cond = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET") not in MUTATING_METHODS:
            return self._app(environ, start_response)
        with self._cond:
            self._inflight += 1
        prewritten: list[Any] = []  # new objects whose data files are being written ahead
        try:
            return self._mutate(environ, start_response, prewritten)
        finally:
            if prewritten:  # the sync used them, or nothing will
                self._mirror.release(prewritten)
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def _mutate(
        self, environ: dict[str, Any], start_response: StartResponse, prewritten: list[Any]
    ) -> Iterable[bytes]:
        captured: list[Any] = []
        written: list[bytes] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured[:] = [status, headers, exc_info]
            return written.append

        def on_put(fake: Any) -> None:
            if self._mirror.prewrite(fake):
                prewritten.append(fake)

        token = _on_put.set(on_put)
        try:
            result = self._app(environ, capture)
            try:
                body = b"".join([*written, *result])  # moto's answers to writes are small
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        finally:
            _on_put.reset(token)
        status, headers, exc_info = captured
        if status[:1] == "2":
            try:
                self._sync(environ)
            except Exception:
                log.exception(
                    "persisting %s %s failed", environ.get("REQUEST_METHOD"), environ.get("RAW_URI")
                )
                start_response(
                    "500 Internal Server Error",
                    [
                        ("Content-Type", "application/xml"),
                        ("Content-Length", str(len(_PERSIST_FAILED))),
                    ],
                )
                return [_PERSIST_FAILED]
        start_response(status, headers, exc_info)
        return [body]

    def _sync(self, environ: dict[str, Any]) -> None:
        target = request_target(environ)
        if target is None:
            self._mirror.sync_all()
        elif target[1] is None:
            self._mirror.sync_bucket(target[0])
        else:
            self._mirror.sync_key(target[0], target[1], copy_source(environ))

    def drain(self, timeout_s: float) -> bool:
        """Wait until no mutating request is in flight; False if `timeout_s` ran out."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True


def _request_handler() -> type[Any]:
    """moto's request handler (it keeps `_` in header names), access log made on demand.

    werkzeug formats a line for every request (decoding the path, colouring the status)
    and only then asks its logger, which `main` sets to drop everything below ERROR:
    ~0.05 ms of CPU per request spent on text nobody sees. Asking first changes no output.
    """
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    access_log = logging.getLogger("werkzeug")

    class Handler(MotoRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            if access_log.isEnabledFor(logging.INFO):
                super().log_request(code, size)

    return Handler


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m nomadpaas.stack.s3server",
        description="Durable S3 server for the embedded stack (moto, persisted to a directory).",
    )
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9000, help="TCP port (default 9000)")
    p.add_argument("--data-dir", type=Path, required=True, help="where objects are persisted")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; exit 0 on a clean stop, 1 if it cannot start."""
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="s3server: %(message)s", stream=sys.stderr)
    # werkzeug logs every request at INFO; keep only its errors.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    from moto.moto_server.werkzeug_app import create_backend_app
    from werkzeug.serving import make_server

    patch_moto_copy()
    store = ObjectStore(args.data_dir, inline_max_bytes=INLINE_MAX_BYTES)
    try:
        store.open()
    except (DataDirLocked, OSError) as exc:
        log.error("cannot use data dir: %s", exc)
        return 1
    try:
        mirror = Mirror(store)
        buckets, objects = mirror.restore()
        app = DurableApp(create_backend_app("s3"), mirror)
        try:
            server = make_server(
                args.bind, args.port, app, threaded=True, request_handler=_request_handler()
            )
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", args.bind, args.port, exc)
            return 1

        def stop(signum: int, frame: FrameType | None) -> None:
            # shutdown() waits for serve_forever to return, so call it off this thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info(
            "listening on http://%s:%d, data dir %s (%d buckets, %d objects restored)",
            args.bind, args.port, args.data_dir, buckets, objects,
        )  # fmt: skip
        server.serve_forever()
        if not app.drain(DRAIN_TIMEOUT_S):
            log.warning("stopping with writes still in flight (they were not acknowledged)")
        server.server_close()
        log.info("stopped")
        return 0
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
