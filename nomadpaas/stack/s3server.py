"""The embedded stack's S3 server: moto's S3 made durable across restarts and crashes.

    python -m nomadpaas.stack.s3server --bind 127.0.0.1 --port 9000 --data-dir DIR

Serves moto's S3 Flask app in-process on werkzeug's threaded server, bound to `--bind`
only. `DurableApp` wraps it: after a mutating request (PUT, POST, DELETE) succeeds, and
before the 2xx answer reaches the client, the touched key (or bucket) is synced from
moto's memory to DIR by `s3mirror.Mirror` with fsync'ed writes (layout: `s3persist`).
So an acknowledged PutObject, CompleteMultipartUpload or CopyObject survives SIGKILL, a
clean stop and a reboot; deletes stay deleted. At start DIR is loaded back into moto
before the port opens, so "answers HTTP" means "holds everything acknowledged before".
If persisting fails (disk full), the client gets a 500 InternalError and retries.

CopyObject honours `x-amz-copy-source-if-match` as S3 does (412, nothing copied), which
moto alone ignores, and its copy shares the source's stored data file (`patch_moto_copy`,
`s3mirror`).

No authentication: moto accepts any credentials and never checks presigned URLs
(reference/tooling.md §2), so anyone who can reach the port can read and write every
object. That is why it binds loopback by default and the data dir should be private.
Only S3 is served; moto's `/moto-api` (reset, recorder) is not mounted.
"""

from __future__ import annotations

import argparse
import contextvars
import logging
import re
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
from nomadpaas.stack.s3persist import DataDirLocked, ObjectStore

__all__ = ["DurableApp", "copy_source", "main", "request_target"]

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
        try:
            return self._mutate(environ, start_response)
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def _mutate(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        captured: list[Any] = []
        written: list[bytes] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured[:] = [status, headers, exc_info]
            return written.append

        result = self._app(environ, capture)
        try:
            body = b"".join([*written, *result])  # moto's answers to writes are small
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
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


#: The `x-amz-copy-source-if-match` of the CopyObject this thread is serving.
_copy_if_match: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "nomadpaas_s3_copy_if_match", default=None
)
#: The FakeKey this thread's CopyObject copies from (for its ETag).
_copying: contextvars.ContextVar[Any] = contextvars.ContextVar("nomadpaas_s3_copying", default=None)
_PLAIN_ETAG = re.compile(r"[0-9a-f]{32}")


def patch_moto_copy() -> None:
    """Teach moto's CopyObject what real S3 does and moto 5 does not.

    - `x-amz-copy-source-if-match`: moto ignores it; S3 answers 412 PreconditionFailed
      and copies nothing when the source's ETag differs (nomadpaas.storage.promote
      relies on it). Checked against the very FakeKey moto copies, so a source replaced
      a moment before cannot slip through.
    - The copy's ETag: moto hashes the copied bytes again; a single-part source's ETag
      already is their MD5, so it is handed over (a 0.6 MB slug's MD5 costs ~1 ms).
    """
    from moto.s3.exceptions import PreconditionFailed
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    respond, copy, put = S3Response.copy_object, S3Backend.copy_object, S3Backend.put_object

    def copy_object_response(self: Any) -> Any:
        token = _copy_if_match.set(self.headers.get("x-amz-copy-source-if-match"))
        try:
            return respond(self)
        finally:
            _copy_if_match.reset(token)

    def copy_object(self: Any, src_key: Any, *args: Any, **kwargs: Any) -> None:
        wanted = _copy_if_match.get()
        if wanted is not None and wanted.strip().strip('"') not in ("*", src_key.etag.strip('"')):
            raise PreconditionFailed("x-amz-copy-source-If-Match")
        token = _copying.set(src_key)
        try:
            copy(self, src_key, *args, **kwargs)
        finally:
            _copying.reset(token)

    def put_object(self: Any, *args: Any, **kwargs: Any) -> Any:
        source = _copying.get()
        if source is not None:
            _copying.set(None)  # only the copy's own put
            known = source._etag  # computed once per object; None if never asked
            if (
                kwargs.get("etag") is None
                and kwargs.get("multipart") is None
                and source.multipart is None
                and isinstance(known, str)
                and _PLAIN_ETAG.fullmatch(known)
            ):
                kwargs["etag"] = known
        return put(self, *args, **kwargs)

    S3Response.copy_object = copy_object_response  # type: ignore[method-assign]
    S3Backend.copy_object = copy_object  # type: ignore[method-assign]
    S3Backend.put_object = put_object  # type: ignore[method-assign]


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

    from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
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
                args.bind, args.port, app, threaded=True, request_handler=MotoRequestHandler
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
