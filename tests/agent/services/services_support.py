"""Helpers for service registration tests: a real local HTTP server whose answers a test
can change, a real uvicorn server for an ASGI app, polling."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from testsupport import free_port

WAIT_S = 30.0  # generous: a loaded 2-core machine


def wait_for(predicate: Callable[[], Any], timeout_s: float = WAIT_S, poll_s: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; its value, or AssertionError on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"condition not met within {timeout_s}s")


class Upstream:
    """A ThreadingHTTPServer: GET /status answers `self.status` (changeable), /slow
    sleeps `slow_s`, /echo returns the request's method and headers in the body."""

    def __init__(self) -> None:
        self.status = 200
        self.slow_s = 5.0
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append((self.command, self.path, dict(self.headers), body))
                if self.path.startswith("/slow"):
                    time.sleep(outer.slow_s)
                    code, text = 200, b"late"
                elif self.path.startswith("/echo"):
                    code, text = 200, f"{self.command} {dict(self.headers)}".encode()
                else:
                    code, text = outer.status, f"status {outer.status}".encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the check gave up (timeout) before the answer

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Upstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port in a thread; yields its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10.0)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10.0)
