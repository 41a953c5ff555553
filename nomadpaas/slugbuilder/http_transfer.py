"""HttpTransfer: the build task's `Transfer` over presigned S3 URLs (plain HTTP GET/PUT).

The dispatcher hands the build short-lived presigned URLs and nothing else (no
credentials, DESIGN.md §5), so moving an object is one unauthenticated request:

- `fetch` streams a GET to disk (written whole or not at all); 404 means "no such
  object" and returns False (a first build has no cache); S3 answers 403 to a GET of a
  missing key when the signer may not list the bucket, so 403 on a *cache* is a miss too
  — the caller decides, via `missing_statuses`.
- `store` PUTs the file with an explicit Content-Length (S3 refuses chunked uploads to a
  presigned PUT URL) and retries transient failures.

Built on the standard library's http.client, not httpx: the build task is a fresh
process per build, and importing httpx (which pulls in its CLI's dependencies) cost
~70 ms of every build's start for two or three plain requests. Thread-safe: each
request uses its own connection (the slug and the cache upload at the same time).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from urllib.parse import urljoin, urlsplit

__all__ = ["HttpTransfer", "TransferError"]

#: Seconds to connect / between bytes; a slow S3 still sends something every minute.
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
#: Attempts per request for connection errors and 5xx answers.
ATTEMPTS = 3
#: Seconds before retry n is delay * n (1 s, 2 s): rides out a restarting S3.
RETRY_DELAY_S = 1.0
#: Redirects followed per request (S3 may redirect to a bucket's regional endpoint).
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK_BYTES = 1024 * 1024
#: Bytes per socket write of an upload (http.client's default is 8 KiB).
_SEND_BLOCK_BYTES = 256 * 1024


class TransferError(OSError):
    """An object could not be fetched or stored; names the URL without its signature."""


def _redacted(url: str) -> str:
    """The URL without its query (the signature is a bearer credential until expiry)."""
    return url.split("?", 1)[0]


def _connect(url: str) -> tuple[http.client.HTTPConnection, str]:
    """A connected HTTP(S) connection for `url`, and the request target (path + query)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransferError(f"not an http(s) URL: {_redacted(url)}")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=CONNECT_TIMEOUT_S, blocksize=_SEND_BLOCK_BYTES
        )
    else:
        conn = http.client.HTTPConnection(
            parts.hostname, parts.port, timeout=CONNECT_TIMEOUT_S, blocksize=_SEND_BLOCK_BYTES
        )
    conn.connect()
    if conn.sock is not None:
        conn.sock.settimeout(READ_TIMEOUT_S)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return conn, target


class HttpTransfer:
    """Fetch and store objects at presigned URLs.

    Parameters:
        missing_statuses: GET statuses that mean "the object does not exist".
    """

    def __init__(self, *, missing_statuses: frozenset[int] = frozenset({404})) -> None:
        self._missing = missing_statuses

    def close(self) -> None:
        """Nothing to release: connections live for one request."""

    def __enter__(self) -> HttpTransfer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, url: str, dest: Path) -> bool:
        """Download `url` to `dest`; False when the object does not exist."""
        for attempt in _attempts():
            try:
                found = self._get(url, dest, attempt)
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, TransferError):
                    raise
                if attempt >= ATTEMPTS:
                    raise TransferError(f"GET {_redacted(url)} failed: {exc!r}") from exc
                continue
            if found is not None:
                return found
        raise AssertionError("unreachable")  # pragma: no cover

    def _get(self, url: str, dest: Path, attempt: int) -> bool | None:
        """One GET (redirects followed); None asks for a retry (a 5xx)."""
        for _ in range(MAX_REDIRECTS + 1):
            conn, target = _connect(url)
            try:
                conn.request("GET", target)
                response = conn.getresponse()
                location = response.getheader("Location")
                if response.status in _REDIRECTS and location:
                    response.read()
                    url = urljoin(url, location)
                    continue
                if response.status in self._missing:
                    return False
                if response.status >= 500 and attempt < ATTEMPTS:
                    return None
                if not 200 <= response.status < 300:
                    raise TransferError(f"GET {_redacted(url)} failed with HTTP {response.status}")
                _write_atomically(dest, iter(partial(response.read, _CHUNK_BYTES), b""))
                return True
            finally:
                conn.close()
        raise TransferError(f"GET {_redacted(url)}: more than {MAX_REDIRECTS} redirects")

    def store(self, path: Path, url: str) -> None:
        """PUT the file at `path` to `url`, with its exact Content-Length."""
        size = path.stat().st_size
        for attempt in _attempts():
            try:
                status, text = self._put(path, url, size)
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, TransferError):
                    raise
                if attempt >= ATTEMPTS:
                    raise TransferError(f"PUT {_redacted(url)} failed: {exc!r}") from exc
                continue
            if 200 <= status < 300:
                return
            if status >= 500 and attempt < ATTEMPTS:
                continue
            raise TransferError(f"PUT {_redacted(url)} failed with HTTP {status}: {text[:200]}")

    def _put(self, path: Path, url: str, size: int) -> tuple[int, str]:
        conn, target = _connect(url)
        try:
            with path.open("rb") as body:
                # A file body with an explicit length is sent as is, in blocks, not chunked.
                conn.request("PUT", target, body=body, headers={"Content-Length": str(size)})
                response = conn.getresponse()
                text = response.read().decode(errors="replace")
            return response.status, text
        finally:
            conn.close()


def _attempts() -> Iterator[int]:
    for attempt in range(1, ATTEMPTS + 1):
        if attempt > 1:
            time.sleep(RETRY_DELAY_S * (attempt - 1))
        yield attempt


def _write_atomically(dest: Path, chunks: Iterator[bytes]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
