"""A minimal HTTP/1.1 client: one request per connection, for the build task's transfers.

    with request("GET", url, headers={"If-None-Match": etag}) as response:
        response.status, response.header("ETag"), response.chunks(1 << 20)

Why not http.client: it imports the `email` package (header parsing) and `ssl` up front,
about 10 ms of every build task's start for two or three plain requests to presigned
URLs. This speaks just what those need: a request with optional headers and a file body
of known length, and a response with a status, headers and a body framed by
Content-Length, chunked encoding or the connection's end (``Connection: close`` is
always sent). ``ssl`` (and with it `socket`) is imported only for https URLs.

Plain http goes through the `_socket` C module, not `socket`: socket.py imports
selectors, array and more (~2 ms of the task's start) for what `create_connection`
and `makefile` add here, and a `str` host makes ``getaddrinfo`` load the ``idna`` codec
(stringprep, unicodedata: ~2.5 ms) even for ``127.0.0.1``; `_connect` does what
`socket.create_connection` does, with the host encoded as that codec would.

Errors are `OSError`s (a malformed or cut-short response is `ProtocolError`), so callers
retry them like a dropped connection.
"""

from __future__ import annotations

import _socket
import io
from collections.abc import Iterator, Mapping

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    from typing import IO

    from _typeshed import WriteableBuffer

__all__ = ["ProtocolError", "Response", "URLParts", "request", "send_request", "split_url"]

#: Longest status or header line accepted (bytes), and most header lines.
MAX_LINE_BYTES = 65536
MAX_HEADERS = 200
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NO_BODY_STATUSES = frozenset({204, 304})
#: Bytes of a request body read and sent at a time.
_BODY_CHUNK_BYTES = 1024 * 1024
_IDNA_FAILED = "encoding with 'idna' codec failed"


class ProtocolError(OSError):
    """The server's answer was not well-formed HTTP/1.1, or ended early."""


class _SocketReader(io.RawIOBase):
    """A connection's receiving side as a raw stream, to buffer (``socket.makefile("rb")``
    without socket.py). Closing it leaves the connection open."""

    def __init__(self, sock: _socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        return self._sock.recv_into(buffer)


class Response:
    """Status, headers (names case-insensitive) and the body of one response."""

    def __init__(self, sock: _socket.socket, method: str) -> None:
        self._sock = sock
        self._file = io.BufferedReader(_SocketReader(sock))
        self.status, self.headers = self._read_head()
        while 100 <= self.status < 200:  # interim answers (100 Continue): read past them
            self.status, self.headers = self._read_head()
        self._remaining: int | None = None
        self._chunked = False
        self._done = method == "HEAD" or self.status in _NO_BODY_STATUSES
        if not self._done:
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                self._chunked = True
            elif "content-length" in self.headers:
                try:
                    self._remaining = int(self.headers["content-length"])
                except ValueError:
                    raise ProtocolError("bad Content-Length") from None
                if self._remaining < 0:
                    raise ProtocolError("bad Content-Length")

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def _line(self) -> bytes:
        line = self._file.readline(MAX_LINE_BYTES + 1)
        if len(line) > MAX_LINE_BYTES:
            raise ProtocolError("header line too long")
        if not line:
            raise ProtocolError("connection closed before the response ended")
        return line

    def _read_head(self) -> tuple[int, dict[str, str]]:
        parts = self._line().decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {parts[:2]!r}")
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                return int(parts[1]), headers
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {line[:80]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        raise ProtocolError(f"more than {MAX_HEADERS} header lines")

    def chunks(self, size: int) -> Iterator[bytes]:
        """The body in pieces of at most `size` bytes; raises if it ends early."""
        if self._done:
            return
        if self._chunked:
            yield from self._chunked_body(size)
        elif self._remaining is None:
            while block := self._file.read1(size):
                yield block
        else:
            while self._remaining > 0:
                block = self._file.read1(min(size, self._remaining))
                if not block:
                    raise ProtocolError(f"body ended {self._remaining} bytes early")
                self._remaining -= len(block)
                yield block
        self._done = True

    def _chunked_body(self, size: int) -> Iterator[bytes]:
        while True:
            text = self._line().split(b";", 1)[0].strip()
            try:
                left = int(text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {text[:20]!r}") from None
            if left == 0:
                while self._line() not in (b"\r\n", b"\n"):  # trailers
                    pass
                return
            while left > 0:
                block = self._file.read1(min(size, left))
                if not block:
                    raise ProtocolError("chunked body ended early")
                left -= len(block)
                yield block
            self._line()  # the CRLF after each chunk

    def read(self) -> bytes:
        return b"".join(self.chunks(1 << 20))

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: IO[bytes] | None = None,
    body_size: int = 0,
    connect_timeout_s: float = 10.0,
    read_timeout_s: float = 120.0,
) -> Response:
    """Send one request to an http(s) `url` and read the response's head.

    `body` (a file of `body_size` bytes, read from its current position) is sent with
    an explicit Content-Length. The caller closes the response (a context manager).
    """
    sock = send_request(
        method, url, headers=headers, body=body, body_size=body_size,
        connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s,
    )  # fmt: skip
    try:
        return Response(sock, method)
    except BaseException:
        sock.close()
        raise


def send_request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: IO[bytes] | None = None,
    body_size: int = 0,
    connect_timeout_s: float = 10.0,
    read_timeout_s: float = 120.0,
) -> _socket.socket:
    """`request` without reading the answer: the connection, the request sent on it.

    ``Response(sock, method)`` reads the answer whenever the caller is ready (the server
    works meanwhile; its answer waits in the socket's buffers). The caller closes it.
    """
    parts = split_url(url)
    head = _head(method, parts, headers or {}, body is not None, body_size)
    sock = (
        _connect_tls(parts.hostname, parts.port, connect_timeout_s)
        if parts.scheme == "https"
        else _connect(parts.hostname, parts.port, connect_timeout_s)
    )
    try:
        sock.settimeout(read_timeout_s)
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        sock.sendall(head)
        if body is not None:
            _send_body(sock, body, body_size)
        return sock
    except BaseException:
        sock.close()
        raise


def _connect(host: str, port: int, timeout_s: float) -> _socket.socket:
    """`socket.create_connection((host, port), timeout_s)`: each address getaddrinfo
    gives, in order, until one connects; else the last error (a `_socket.gaierror`
    when the name does not resolve, TimeoutError for a timeout: OSErrors all)."""
    infos = _socket.getaddrinfo(_host_bytes(host), port, 0, _socket.SOCK_STREAM)
    error: OSError | None = None
    for family, kind, proto, _name, address in infos:
        sock = None
        try:
            sock = _socket.socket(family, kind, proto)
            sock.settimeout(timeout_s)
            sock.connect(address)
            return sock
        except OSError as exc:
            error = exc
            if sock is not None:
                sock.close()
    raise error or OSError("getaddrinfo returns an empty list")


def _connect_tls(host: str, port: int, timeout_s: float) -> _socket.socket:
    """A TLS connection checked against the system's CAs (socket.py and ssl: https only;
    most builds talk to S3 over plain HTTP on a LAN)."""
    import socket
    import ssl

    sock = socket.create_connection((host, port), timeout=timeout_s)
    try:
        return ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def _host_bytes(host: str) -> bytes:
    """`host` as ``host.encode("idna")`` gives it (what getaddrinfo does with a str),
    without loading that codec for an ASCII name: the codec's own fast path for those,
    label lengths checked the same way, with the same error."""
    try:
        raw = host.encode("ascii")
    except UnicodeEncodeError:
        return host.encode("idna")
    labels = raw.split(b".")
    if any(not 0 < len(label) < 64 for label in labels[:-1]):
        raise UnicodeError(f"{_IDNA_FAILED} (UnicodeError: label empty or too long)")
    if len(labels[-1]) >= 64:
        raise UnicodeError(f"{_IDNA_FAILED} (UnicodeError: label too long)")
    return raw


class URLParts:
    """An http(s) URL's pieces that a request needs (what `urlsplit` would give)."""

    __slots__ = ("hostname", "path", "port", "query", "scheme")

    def __init__(self, scheme: str, hostname: str, port: int, path: str, query: str) -> None:
        self.scheme, self.hostname, self.port, self.path, self.query = (
            scheme, hostname, port, path, query,
        )  # fmt: skip


def split_url(url: str) -> URLParts:
    """Split an absolute http(s) URL; ValueError for anything else.

    Not `urllib.parse`, whose import is another ~2 ms of the build task's start; this
    reads ``scheme://[userinfo@]host[:port][/path][?query][#fragment]`` as RFC 3986
    does, with the host lower-cased and brackets of an IPv6 literal removed. Spaces and
    control characters are refused rather than dropped (they never belong in a
    presigned URL, and must not reach the request line).
    """
    shown = url.split("?", 1)[0]
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS:
        raise ValueError(f"not an http(s) URL: {shown}")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise ValueError(f"URL holds a space or control character: {shown!r}")
    rest = rest.split("#", 1)[0]
    end = len(rest)
    for delimiter in "/?":
        found = rest.find(delimiter)
        if found != -1:
            end = min(end, found)
    authority, tail = rest[:end], rest[end:]
    path, _, query = tail.partition("?")
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        hostname, bracket, port_text = host[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise ValueError(f"bad IPv6 host in URL: {shown}")
        port_text = port_text[1:]
    else:
        hostname, _, port_text = host.partition(":")
    if not hostname:
        raise ValueError(f"not an http(s) URL: {shown}")
    port = _DEFAULT_PORTS[scheme]
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            raise ValueError(f"bad port in URL: {shown}")
        port = int(port_text)
    return URLParts(scheme, hostname.lower(), port, path, query)


def _head(
    method: str, parts: URLParts, headers: Mapping[str, str], has_body: bool, size: int
) -> bytes:
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    # Presigned URLs sign the Host header as the URL spells it, default port left out.
    if parts.port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{parts.port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += ["Accept-Encoding: identity"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} holds a line break")
        if name.lower() != "content-length":
            lines.append(f"{name}: {value}")
    if has_body or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {size}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _send_body(sock: _socket.socket, body: IO[bytes], size: int) -> None:
    """Send exactly `size` bytes of `body`, from its current position, a chunk at a time
    (`socket.sendfile` would need socket.py and selectors; a slug is a few MB at most)."""
    sent = 0
    while sent < size:
        block = body.read(min(size - sent, _BODY_CHUNK_BYTES))
        if not block:
            break
        sock.sendall(block)
        sent += len(block)
    if sent != size:
        raise ProtocolError(f"sent {sent} of {size} body bytes (the file changed?)")
