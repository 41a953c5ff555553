"""HttpTransfer: the build task's `Transfer` over presigned S3 URLs (plain HTTP GET/PUT).

The dispatcher hands the build short-lived presigned URLs and nothing else (no
credentials, DESIGN.md §5), so moving an object is one unauthenticated request:

- `fetch` streams a GET to disk (written whole or not at all); 404 means "no such
  object" and returns False (a first build has no cache); S3 answers 403 to a GET of a
  missing key when the signer may not list the bucket, so 403 on a *cache* is a miss too
  — the caller decides, via `missing_statuses`.
- `fetch_tagged` is `fetch` with the object's ETag, and optionally conditional
  (``If-None-Match``: an unsigned extra header is allowed on a presigned GET); a 304
  leaves `dest` alone. The node-local build cache uses it (localcache.py).
- a GET the task sent at its very start (early.py) is not made again: `fetch_tagged`
  reads that answer when it is a success, a 304 or a miss, else asks as usual;
- `store` PUTs the file with an explicit Content-Length (S3 refuses chunked uploads to a
  presigned PUT URL), retries transient failures, and returns the new object's ETag.

Built on a minimal HTTP/1.1 client (http1.py), not httpx or http.client: the build task
is a fresh process per build, and importing those cost ~70 ms (httpx) or ~10 ms
(http.client's email and ssl imports) of every build's start for two or three plain
requests. Thread-safe: each request uses its own connection (the slug and the cache
upload at the same time).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import namedtuple
from collections.abc import Iterator

from nomadpaas.slugbuilder.http1 import Response, request
from nomadpaas.slugbuilder.scratch import mkstemp

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    from typing import Any, Literal, NamedTuple, TypeAlias

    from nomadpaas.slugbuilder.early import EarlyRequests

    StrPath: TypeAlias = str | os.PathLike[str]

__all__ = ["Fetched", "HttpTransfer", "TransferError", "object_id"]

#: Seconds to connect / between bytes; a slow S3 still sends something every minute.
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
#: Attempts per request for connection errors and 5xx answers (an early request that
#: failed does not count: the request is made afresh, see early.py).
ATTEMPTS = 3
#: Seconds before retry n is delay * n (1 s, 2 s): rides out a restarting S3.
RETRY_DELAY_S = 1.0
#: Redirects followed per request (S3 may redirect to a bucket's regional endpoint).
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK_BYTES = 1024 * 1024


class TransferError(OSError):
    """An object could not be fetched or stored; names the URL without its signature."""


if TYPE_CHECKING:

    class Fetched(NamedTuple):
        """What a (conditional) GET found: `fetched` (written to dest), `not-modified`
        (the object's ETag is still the one given; dest untouched) or `missing`; and the
        ETag."""

        status: Literal["fetched", "not-modified", "missing"]
        etag: str | None = None

else:  # the same class, without importing `typing` (the build task's start)
    Fetched = namedtuple("Fetched", ["status", "etag"], defaults=[None])
    Fetched.__doc__ = "What a (conditional) GET found, and the object's ETag."


def object_id(url: str) -> str:
    """The object a (presigned) URL names: the URL without its query. Also what errors
    show of a URL, as the signature in the query is a bearer credential until expiry."""
    return url.split("?", 1)[0]


class HttpTransfer:
    """Fetch and store objects at presigned URLs.

    Parameters:
        missing_statuses: GET statuses that mean "the object does not exist".
        early: GETs sent at the task's start (early.py); a fetch of the same request
            reads its answer instead of asking again, when that answer is usable.
    """

    def __init__(
        self,
        *,
        missing_statuses: frozenset[int] = frozenset({404}),
        early: EarlyRequests | None = None,
    ) -> None:
        self._missing = missing_statuses
        self._early = early

    def close(self) -> None:
        """Close the early requests nobody took (other connections live for one request)."""
        if self._early is not None:
            self._early.close()

    def __enter__(self) -> HttpTransfer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, url: str, dest: StrPath) -> bool:
        """Download `url` to `dest`; False when the object does not exist."""
        return self.fetch_tagged(url, dest).status == "fetched"

    def fetch_tagged(self, url: str, dest: StrPath, if_none_match: str | None = None) -> Fetched:
        """Download `url` to `dest` unless its ETag is `if_none_match`; say which."""
        early = self._early_answer(url, dest, if_none_match)
        if early is not None:
            return early
        for attempt in _attempts():
            try:
                found = self._get(url, dest, attempt, if_none_match)
            except OSError as exc:
                if isinstance(exc, TransferError):
                    raise
                if attempt >= ATTEMPTS:
                    raise TransferError(f"GET {object_id(url)} failed: {exc!r}") from exc
                continue
            if found is not None:
                return found
        raise AssertionError("unreachable")  # pragma: no cover

    def _get(
        self, url: str, dest: StrPath, attempt: int, if_none_match: str | None
    ) -> Fetched | None:
        """One GET (redirects followed); None asks for a retry (a 5xx)."""
        headers = {"If-None-Match": if_none_match} if if_none_match else {}
        for _ in range(MAX_REDIRECTS + 1):
            with _request("GET", url, headers=headers) as response:
                location = response.header("Location")
                if response.status in _REDIRECTS and location:
                    from urllib.parse import urljoin  # rare: not at every task's start

                    url = urljoin(url, location)
                    continue
                return self._answer(response, url, dest, attempt, if_none_match)
        raise TransferError(f"GET {object_id(url)}: more than {MAX_REDIRECTS} redirects")

    def _answer(
        self, response: Response, url: str, dest: StrPath, attempt: int, if_none_match: str | None
    ) -> Fetched | None:
        """What a GET's (final) response says; None asks for a retry (a 5xx)."""
        etag = response.header("ETag")
        if response.status == 304 and if_none_match:
            return Fetched("not-modified", etag or if_none_match)
        if response.status in self._missing:
            return Fetched("missing")
        if response.status >= 500 and attempt < ATTEMPTS:
            return None
        if not 200 <= response.status < 300:
            raise TransferError(f"GET {object_id(url)} failed with HTTP {response.status}")
        _write_atomically(dest, response.chunks(_CHUNK_BYTES))
        return Fetched("fetched", etag)

    def _early_answer(self, url: str, dest: StrPath, if_none_match: str | None) -> Fetched | None:
        """The answer to this very GET sent at the task's start, when it is a success, a
        304 or a miss; None otherwise (the GET is then made as usual, so every error and
        retry is what it would have been without the early request)."""
        sock = self._early.take(url, if_none_match) if self._early is not None else None
        if sock is None:
            return None
        try:
            with contextlib.closing(sock), Response(sock, "GET") as response:
                status = response.status
                usable = (
                    200 <= status < 300
                    or (status == 304 and bool(if_none_match))
                    or status in self._missing
                )
                if not usable:
                    return None
                return self._answer(response, url, dest, ATTEMPTS, if_none_match)
        except OSError:  # cut short, reset, malformed, or the disk: ask again
            return None

    def store(self, path: StrPath, url: str) -> str | None:
        """PUT the file at `path` to `url`, with its exact Content-Length; return the new
        object's ETag (None when the server does not say)."""
        size = os.stat(path).st_size
        for attempt in _attempts():
            try:
                status, text, etag = self._put(path, url, size)
            except OSError as exc:
                if isinstance(exc, TransferError):
                    raise
                if attempt >= ATTEMPTS:
                    raise TransferError(f"PUT {object_id(url)} failed: {exc!r}") from exc
                continue
            if 200 <= status < 300:
                return etag
            if status >= 500 and attempt < ATTEMPTS:
                continue
            raise TransferError(f"PUT {object_id(url)} failed with HTTP {status}: {text[:200]}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _put(self, path: StrPath, url: str, size: int) -> tuple[int, str, str | None]:
        with open(path, "rb") as body, _request("PUT", url, body=body, body_size=size) as response:
            text = response.read().decode(errors="replace")
            return response.status, text, response.header("ETag")


def _request(method: str, url: str, **kwargs: Any) -> Response:
    try:
        return request(
            method,
            url,
            connect_timeout_s=CONNECT_TIMEOUT_S,
            read_timeout_s=READ_TIMEOUT_S,
            **kwargs,
        )
    except ValueError as exc:  # not an http(s) URL, or a header with a line break
        raise TransferError(f"{method} {object_id(url)}: {exc}") from exc


def _attempts() -> Iterator[int]:
    for attempt in range(1, ATTEMPTS + 1):
        if attempt > 1:
            time.sleep(RETRY_DELAY_S * (attempt - 1))
        yield attempt


def _write_atomically(dest: StrPath, chunks: Iterator[bytes]) -> None:
    parent, name = os.path.split(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = mkstemp(prefix=f".{name}.", dir=parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
