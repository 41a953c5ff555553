"""The minimal HTTP/1.1 client against a raw socket server that answers canned bytes."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import nomadpaas
from nomadpaas.slugbuilder.http1 import ProtocolError, _host_bytes, request, split_url

ROOT = str(Path(nomadpaas.__file__).resolve().parent.parent)

#: Seconds a test server waits for its one client.
ACCEPT_TIMEOUT_S = 30.0


class CannedServer:
    """Accepts one connection, reads the request head (and a Content-Length body),
    records it, sends `answer` and closes."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.request = b""
        self.body = b""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(ACCEPT_TIMEOUT_S)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            conn.settimeout(ACCEPT_TIMEOUT_S)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            self.request = head
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                    while len(body) < length:
                        body += conn.recv(65536)
            self.body = body
            conn.sendall(self.answer)

    def close(self) -> None:
        self._thread.join(timeout=ACCEPT_TIMEOUT_S)
        self._listener.close()


@pytest.fixture
def serve() -> Iterator[list[CannedServer]]:
    servers: list[CannedServer] = []
    yield servers
    for server in servers:
        server.close()


def _server(servers: list[CannedServer], answer: bytes) -> CannedServer:
    server = CannedServer(answer)
    servers.append(server)
    return server


def test_get_with_headers_and_a_content_length_body(serve: list[CannedServer]) -> None:
    server = _server(serve, b'HTTP/1.1 200 OK\r\nETag: "abc"\r\nContent-Length: 5\r\n\r\nhello')
    with request("GET", f"{server.url}/k?X-Amz-Signature=s", headers={"If-None-Match": '"x"'}) as r:
        assert (r.status, r.header("etag"), r.read()) == (200, '"abc"', b"hello")
    lines = server.request.decode().split("\r\n")
    assert lines[0] == "GET /k?X-Amz-Signature=s HTTP/1.1"
    port = server.url.rsplit(":", 1)[1]
    assert f"Host: 127.0.0.1:{port}" in lines  # as presigned URLs sign it
    assert 'If-None-Match: "x"' in lines and "Connection: close" in lines


def test_chunked_body_with_trailers_and_interim_answers(serve: list[CannedServer]) -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n"
    )
    server = _server(serve, answer)
    with request("GET", server.url) as response:
        assert response.status == 200
        assert list(response.chunks(3)) == [b"wik", b"i", b"ped", b"ia"]


def test_304_has_no_body_and_a_body_until_close_is_read_whole(serve: list[CannedServer]) -> None:
    server = _server(serve, b'HTTP/1.1 304 Not Modified\r\nETag: "e"\r\nContent-Length: 9\r\n\r\n')
    with request("GET", server.url) as response:
        assert response.status == 304 and response.read() == b""
    server = _server(serve, b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
    with request("GET", server.url) as response:
        assert response.read() == b"until the end"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"",
    ],
)
def test_malformed_or_cut_answers_are_protocol_errors(
    serve: list[CannedServer], answer: bytes
) -> None:
    server = _server(serve, answer)
    with pytest.raises(ProtocolError), request("GET", server.url) as response:
        response.read()  # a ProtocolError is an OSError: callers retry it


def test_put_sends_the_file_with_its_length(serve: list[CannedServer], tmp_path: Path) -> None:
    payload = bytes(range(256)) * 3000
    (tmp_path / "f").write_bytes(payload)
    server = _server(serve, b'HTTP/1.1 200 OK\r\nETag: "new"\r\nContent-Length: 0\r\n\r\n')
    url = f"{server.url}/o"
    with (
        (tmp_path / "f").open("rb") as body,
        request("PUT", url, body=body, body_size=len(payload)) as r,
    ):
        assert r.status == 200 and r.header("ETag") == '"new"'
    assert server.body == payload
    head = server.request.decode()
    assert f"Content-Length: {len(payload)}" in head and "chunked" not in head


def test_line_breaks_in_headers_and_other_schemes_are_refused() -> None:
    with pytest.raises(ValueError):
        request("GET", "ftp://example.invalid/x")
    with pytest.raises(ValueError, match="line break"):
        # Refused before connecting (nothing listens on port 9 here).
        request("GET", "http://127.0.0.1:9/", headers={"X": "a\r\nInjected: 1"})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/bucket/key?X-Amz-Signature=abc&X-Amz-Date=1",
        "http://S3.Example.COM/b/k",
        "https://s3.example.com/b/k%20x?a=1#frag",
        "http://user:pw@host:8080/p",
        "http://[::1]:9000/b/k?q",
        "http://[fe80::1]/b",
        "http://host",
        "http://host?only=query",
        "HTTP://host:80/x",
    ],
)
def test_split_url_reads_what_urlsplit_reads(url: str) -> None:
    from urllib.parse import urlsplit

    expected = urlsplit(url)
    parts = split_url(url)
    assert parts.scheme == expected.scheme
    assert parts.hostname == expected.hostname
    assert parts.port == (expected.port or {"http": 80, "https": 443}[expected.scheme])
    assert (parts.path, parts.query) == (expected.path, expected.query)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/x",
        "host/x",
        "http:///x",
        "http://host:99999/x",
        "http://host:8o/x",
        "http://[::1/x",
        "http://host/a b",
        "http://host/a\r\nInjected: 1",
    ],
)
def test_split_url_refuses_what_a_request_must_not_send(url: str) -> None:
    with pytest.raises(ValueError):
        split_url(url)


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "s3.example.com", "::1", "a" * 63 + ".com", "a" * 64 + ".com", "a..b",
     "trailing.dot.", "a" * 64, "bücher.example", "EXAMPLE.com"],
)  # fmt: skip
def test_hosts_are_encoded_as_the_idna_codec_encodes_them(host: str) -> None:
    try:
        expected: bytes | str = host.encode("idna")
    except UnicodeError as exc:
        expected = f"{type(exc).__name__}: {exc}"
    try:
        got: bytes | str = _host_bytes(host)
    except UnicodeError as exc:
        got = f"{type(exc).__name__}: {exc}"
    assert got == expected


def test_a_plain_request_loads_neither_socket_py_nor_the_idna_codec(
    serve: list[CannedServer],
) -> None:
    # socket.py (selectors, array…) and the idna codec (stringprep, unicodedata) cost
    # ~4.5 ms of the build task's start; `ssl` is for https only.
    server = _server(serve, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    code = (
        "import sys\n"
        "from nomadpaas.slugbuilder.http1 import request\n"
        f"with request('GET', {server.url + '/k'!r}) as r:\n"
        "    assert (r.status, r.read()) == (200, b'ok')\n"
        "print(' '.join(sorted(set(sys.modules) & "
        "{'socket', 'selectors', 'encodings.idna', 'unicodedata', 'ssl'})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {ROOT!r})\n{code}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == ""


def test_a_refused_connection_is_an_oserror() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with pytest.raises(ConnectionRefusedError):
        request("GET", f"http://127.0.0.1:{port}/k", connect_timeout_s=5.0)


def test_an_ipv6_literal_host_is_reached(serve: list[CannedServer]) -> None:
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    listener.settimeout(ACCEPT_TIMEOUT_S)
    port = listener.getsockname()[1]
    seen: list[bytes] = []

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            seen.append(conn.recv(65536))
            conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with request("GET", f"http://[::1]:{port}/k") as response:
            assert response.status == 204
        thread.join(timeout=ACCEPT_TIMEOUT_S)
        assert seen and f"Host: [::1]:{port}".encode() in seen[0]
    finally:
        listener.close()


def test_a_body_shorter_than_its_length_is_a_protocol_error(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(ACCEPT_TIMEOUT_S)
    received: list[bytes] = []

    def drain() -> None:  # reads until the client gives up, answering nothing
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(ACCEPT_TIMEOUT_S)
            for _ in range(10_000):
                data = conn.recv(65536)
                if not data:
                    return
                received.append(data)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    body_file = tmp_path / "f"
    body_file.write_bytes(b"x" * 100)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/o"
    try:
        with body_file.open("rb") as body, pytest.raises(ProtocolError, match="sent 100 of 200"):
            request("PUT", url, body=body, body_size=200)
        thread.join(timeout=ACCEPT_TIMEOUT_S)
        assert b"".join(received).endswith(b"\r\n\r\n" + b"x" * 100)
    finally:
        listener.close()
