"""Streams an HTTP(S) URL to a file with timeouts and a size cap; mirrors go-getter get_http.go."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import httpx

from nomadpaas.agent.client.getter.errors import ArtifactError

GIB = 1024**3
CONNECT_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 30 * 60.0  # Nomad's http_read_timeout default: 30m
MAX_DOWNLOAD_BYTES = 100 * GIB  # Nomad's http_max_size default: 100GB
CHUNK_BYTES = 1024 * 1024
_RETRYABLE_4XX = (408, 425, 429)


def _timeout(read_timeout_s: float) -> httpx.Timeout:
    return httpx.Timeout(CONNECT_TIMEOUT_S, read=read_timeout_s)


def download(
    url: str,
    dest: Path,
    *,
    headers: Mapping[str, str] | None = None,
    read_timeout_s: float = READ_TIMEOUT_S,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> None:
    """GET `url` into file `dest` (created or truncated), never holding the body in memory.

    Raises ArtifactError: `bad response code: N` (recoverable for 5xx, 408 and 429),
    a size-limit error (unrecoverable) or a transport error (recoverable).
    """
    try:
        with (
            httpx.Client(timeout=_timeout(read_timeout_s), follow_redirects=True) as client,
            client.stream("GET", url, headers=dict(headers or {})) as response,
        ):
            if response.status_code != 200:
                detail = error_detail(response)
                code = response.status_code
                raise ArtifactError(
                    f"bad response code: {code}{detail}",
                    recoverable=code >= 500 or code in _RETRYABLE_4XX,
                )
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise ArtifactError(
                    f"download size {declared} exceeds the limit of {max_bytes} bytes",
                    recoverable=False,
                )
            _write_body(response, dest, max_bytes)
    except httpx.HTTPError as exc:
        raise ArtifactError(f"error downloading {_redact(url)}: {exc}", recoverable=True) from exc


def _write_body(response: httpx.Response, dest: Path, max_bytes: int) -> None:
    written = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        for chunk in response.iter_bytes(CHUNK_BYTES):
            written += len(chunk)
            if written > max_bytes:
                raise ArtifactError(
                    f"download exceeds the limit of {max_bytes} bytes", recoverable=False
                )
            out.write(chunk)


def error_detail(response: httpx.Response) -> str:
    """`: Code: Message` from an S3-style XML error body, read with a small cap."""
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > 16 * 1024:
            break
    text = body.decode("utf-8", "replace")
    code = _xml_field(text, "Code")
    message = _xml_field(text, "Message")
    if code:
        return f" ({code}: {message})" if message else f" ({code})"
    return ""


def _xml_field(text: str, tag: str) -> str:
    start = text.find(f"<{tag}>")
    end = text.find(f"</{tag}>", start)
    return text[start + len(tag) + 2 : end].strip() if start >= 0 and end > start else ""


def _redact(url: str) -> str:
    """Drop the query (presigned URLs carry credentials) from a URL shown in an error."""
    return url.split("?", 1)[0]
