"""HttpTransfer: the build task's `Transfer` over presigned S3 URLs (plain HTTP GET/PUT).

The dispatcher hands the build short-lived presigned URLs and nothing else (no
credentials, DESIGN.md §5), so moving an object is one unauthenticated request:

- `fetch` streams a GET to disk (written whole or not at all); 404 means "no such
  object" and returns False (a first build has no cache); S3 answers 403 to a GET of a
  missing key when the signer may not list the bucket, so 403 on a *cache* is a miss too
  — the caller decides, via `missing_statuses`.
- `store` PUTs the file with an explicit Content-Length (S3 refuses chunked uploads to a
  presigned PUT URL) and retries transient failures.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import httpx

__all__ = ["HttpTransfer", "TransferError"]

#: Seconds to connect / between bytes; a slow S3 still sends something every minute.
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
#: Attempts per request for connection errors and 5xx answers.
ATTEMPTS = 3
#: Seconds before retry n is delay * n (1 s, 2 s): rides out a restarting S3.
RETRY_DELAY_S = 1.0
_CHUNK_BYTES = 1024 * 1024


class TransferError(OSError):
    """An object could not be fetched or stored; names the URL without its signature."""


def _redacted(url: str) -> str:
    """The URL without its query (the signature is a bearer credential until expiry)."""
    return url.split("?", 1)[0]


class HttpTransfer:
    """Fetch and store objects at presigned URLs.

    Parameters:
        client: an httpx client (tests may pass one with a mock transport).
        missing_statuses: GET statuses that mean "the object does not exist".
    """

    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        missing_statuses: frozenset[int] = frozenset({404}),
    ) -> None:
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            follow_redirects=True,
        )
        self._missing = missing_statuses

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpTransfer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, url: str, dest: Path) -> bool:
        """Download `url` to `dest`; False when the object does not exist."""
        for attempt in _attempts():
            try:
                with self._client.stream("GET", url) as response:
                    if response.status_code in self._missing:
                        return False
                    if response.status_code >= 500 and attempt < ATTEMPTS:
                        continue
                    if not response.is_success:
                        raise TransferError(
                            f"GET {_redacted(url)} failed with HTTP {response.status_code}"
                        )
                    _write_atomically(dest, response.iter_bytes(_CHUNK_BYTES))
                    return True
            except httpx.TransportError as exc:
                if attempt >= ATTEMPTS:
                    raise TransferError(f"GET {_redacted(url)} failed: {exc!r}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def store(self, path: Path, url: str) -> None:
        """PUT the file at `path` to `url`, with its exact Content-Length."""
        size = path.stat().st_size
        for attempt in _attempts():
            try:
                with path.open("rb") as f:
                    response = self._client.put(
                        url,
                        content=_chunks(f),
                        headers={"Content-Length": str(size)},
                    )
                if response.is_success:
                    return
                if response.status_code >= 500 and attempt < ATTEMPTS:
                    continue
                raise TransferError(
                    f"PUT {_redacted(url)} failed with HTTP {response.status_code}: "
                    f"{response.text[:200]}"
                )
            except httpx.TransportError as exc:
                if attempt >= ATTEMPTS:
                    raise TransferError(f"PUT {_redacted(url)} failed: {exc!r}") from exc


def _attempts() -> Iterator[int]:
    for attempt in range(1, ATTEMPTS + 1):
        if attempt > 1:
            time.sleep(RETRY_DELAY_S * (attempt - 1))
        yield attempt


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(_CHUNK_BYTES):
        yield chunk


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
