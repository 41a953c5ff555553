"""Helpers for the event stream tests: a threaded NDJSON reader and bounded waits."""

from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

WAIT_S = 20.0
END = object()  # queued when the body ends (or the connection fails)


class StreamReader:
    """Reads `/v1/event/stream` on a thread; every line (parsed JSON) goes to a queue.

    Built on http.client so `close()` can shut the socket down under a blocked read
    (closing an httpx response from another thread does not wake the reader)."""

    def __init__(self, base_url: str, params: Any = None, token: str | None = None) -> None:
        url = urllib.parse.urlsplit(base_url)
        self._conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=120)
        query = urllib.parse.urlencode(params or {}, doseq=True)
        self._path = "/v1/event/stream" + (f"?{query}" if query else "")
        self._headers = {"X-Nomad-Token": token} if token else {}
        self.lines: queue.Queue[Any] = queue.Queue()
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._conn.request("GET", self._path, headers=self._headers)
            resp = self._conn.getresponse()
            self.status = resp.status
            self.headers = {k.lower(): v for k, v in resp.getheaders()}
            while line := resp.readline():
                assert line.strip(), "blank line in the event stream"
                self.lines.put(json.loads(line))
        except Exception as err:  # closed from the test thread, or the server went away
            self.lines.put(err)
        finally:
            self.ended.set()
            self.lines.put(END)

    def next_line(self, timeout: float = WAIT_S) -> Any:
        item = self.lines.get(timeout=timeout)
        if isinstance(item, Exception):
            raise item
        return item

    def next_data(self, timeout: float = WAIT_S) -> dict[str, Any]:
        """The next non-heartbeat line."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.next_line(max(0.01, deadline - time.monotonic()))
            if line is END:
                raise AssertionError("event stream ended")
            if line:
                return dict(line)

    def events_until(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = WAIT_S
    ) -> list[dict[str, Any]]:
        """Every event read until one satisfies `pred` (included); fails on timeout."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            line = self.next_data(max(0.01, deadline - time.monotonic()))
            for event in line["Events"]:
                seen.append(event)
                if pred(event):
                    return seen
        raise AssertionError(f"no matching event within {timeout}s; saw {summary(seen)}")

    def close(self) -> None:
        """Disconnect (as a client going away does) and wait for the reader thread."""
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(10)
        self._conn.close()
        assert not self._thread.is_alive(), "the reader thread did not stop"


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str, str, int]]:
    return [(e["Topic"], e["Type"], e["Key"], e["Index"]) for e in events]


def wait_for(pred: Callable[[], bool], timeout: float = WAIT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout}s")
