"""An in-memory fake of Nomad's Variables endpoints for httpx.MockTransport (unit tests only).

It follows nomad-api.md §7: 404 `variable not found`, `?cas=` with 0 = create-only, 409
with the current variable as the body and `X-Nomad-Index`, 204 on delete, metadata-only
lists by prefix, empty Items refused. Thread-safe, so racing threads can share it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from nomadpaas.nomad.client import NomadClient


@dataclass
class FakeNomad:
    """The Variables state of one fake Nomad, plus a log of the requests it answered."""

    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    index: int = 10
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: path → how many upcoming PUTs on it to answer 409 (to exercise retries).
    inject_conflicts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: seconds every answer is held back (outside the lock), to widen race windows.
    latency_s: float = 0.0

    def client(self, address: str = "http://nomad.test:4646", **kwargs: Any) -> NomadClient:
        return NomadClient(address, transport=httpx.MockTransport(self.handle), **kwargs)

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.requests if m in ("PUT", "POST", "DELETE")]

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append((request.method, request.url.path))
            response = self._handle(request)
        if self.latency_s:
            time.sleep(self.latency_s)
        return response

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        params = request.url.params
        if path == "/v1/vars" and request.method == "GET":
            prefix = params.get("prefix", "")
            rows = [
                {k: v for k, v in var.items() if k != "Items"}
                for p, var in sorted(self.variables.items())
                if p.startswith(prefix)
            ]
            return httpx.Response(200, json=rows, headers={"X-Nomad-Index": str(self.index)})
        if not path.startswith("/v1/var/"):
            return httpx.Response(404, text="")
        var_path = path.removeprefix("/v1/var/")
        current = self.variables.get(var_path)
        if request.method == "GET":
            if current is None:
                return httpx.Response(404, text="variable not found")
            return httpx.Response(200, json=current, headers=self._index(current))
        cas = params.get("cas")
        if cas is not None and not self._cas_ok(current, int(cas)):
            return self._conflict(var_path, current)
        if request.method == "DELETE":
            self.variables.pop(var_path, None)
            self.index += 1
            return httpx.Response(204, headers={"X-Nomad-Index": str(self.index)})
        if request.method in ("PUT", "POST"):
            if self.inject_conflicts.get(var_path, 0) > 0:
                self.inject_conflicts[var_path] -= 1
                return self._conflict(var_path, current)
            body = json.loads(request.content or b"null")
            if not isinstance(body, dict) or body.get("Items") is None:
                return httpx.Response(400, text="variable missing required Items object")
            if not body["Items"]:
                return httpx.Response(400, text="empty variables are invalid")
            self.index += 1
            stored = {
                "Namespace": params.get("namespace", "default"),
                "Path": var_path,
                "CreateIndex": current["CreateIndex"] if current else self.index,
                "CreateTime": 1_700_000_000_000_000_000,
                "ModifyIndex": self.index,
                "ModifyTime": 1_700_000_000_000_000_000,
                "Items": {str(k): str(v) for k, v in body["Items"].items()},
            }
            self.variables[var_path] = stored
            return httpx.Response(200, json=stored, headers=self._index(stored))
        return httpx.Response(400, text="Invalid method")

    @staticmethod
    def _cas_ok(current: dict[str, Any] | None, cas: int) -> bool:
        if current is None:
            return cas == 0
        return bool(current["ModifyIndex"] == cas)

    @staticmethod
    def _index(var: dict[str, Any]) -> dict[str, str]:
        return {"X-Nomad-Index": str(var["ModifyIndex"])}

    def _conflict(self, path: str, current: dict[str, Any] | None) -> httpx.Response:
        body = current or {"Path": path, "Namespace": "default", "ModifyIndex": 0, "Items": None}
        return httpx.Response(409, json=body, headers=self._index(body))
