"""A fake of the Nomad endpoints a build uses, for httpx.MockTransport (unit tests only).

Jobs (read, register, dispatch with `?idempotency_token=`), evaluation allocations,
allocation reads and framed log streams (nomad-api.md §1, §3, §5). The "task" runs
synchronously at dispatch: by default the real build task (`dispatched.run`) against
the real S3 test server through the presigned URLs it was given, its stdout captured.
A dispatch `Payload` is checked as Nomad checks it (the parent's `ParameterizedJob.Payload`
mode, the 16 KiB limit) and handed to the task as Nomad does: written to the task's
`local/<DispatchPayload.File>` (`real_task` builds from it, as the real task does).
Logs come back as base64 frames split at awkward chunk boundaries with `{}` heartbeats,
and a followed stream does not end when the allocation stops (issue #4663).
"""

from __future__ import annotations

import base64
import base64 as b64
import contextlib
import contextvars
import io
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx

from nomadpaas.nomad.client import NomadClient
from nomadpaas.slugbuilder.dispatched import run as run_task
from nomadpaas.slugbuilder.http_transfer import HttpTransfer
from nomadpaas.slugbuilder.payload import PAYLOAD_FILE

#: The dispatch payload of the task the fake is running (set around its run: the fake
#: runs it synchronously, in the thread that dispatched), for `real_task`.
PAYLOAD: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("payload", default=None)

#: (exit code, stdout, stderr) of one simulated task run, given its dispatch meta.
TaskRunner = Callable[[dict[str, str]], tuple[int, bytes, bytes]]


def real_task(meta: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run the real build task in-process; its stdout is the log."""
    out = io.StringIO()
    payload = PAYLOAD.get()
    with (
        tempfile.TemporaryDirectory(prefix="fake-task-") as scratch,
        HttpTransfer() as transfer,
        contextlib.redirect_stdout(out),
    ):
        source_file = None
        if payload is not None:  # Nomad writes it to local/<File> before the task starts
            source_file = str(Path(scratch) / PAYLOAD_FILE)
            Path(source_file).write_bytes(payload)
        code, _record = run_task(meta, transfer, Path(scratch), source_file=source_file)
    return code, out.getvalue().encode(), b""


def frames(data: bytes, chunk: int = 7, frame_bytes: int = 23) -> Iterator[bytes]:
    """`data` as JSON frames (with heartbeats), re-cut into `chunk`-byte HTTP chunks."""
    body = b"{}"
    offset = 0
    for start in range(0, len(data), frame_bytes):
        piece = data[start : start + frame_bytes]
        offset += len(piece)
        frame = {"Offset": offset, "Data": base64.b64encode(piece).decode(), "File": "x"}
        body += json.dumps(frame).encode() + (b"{}" if start % 3 == 0 else b"")
    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]


@dataclass
class FakeBuildNomad:
    """State of one fake Nomad that runs builds."""

    task: TaskRunner = real_task
    #: allocation reads answered `running` before the terminal status shows.
    running_reads: int = 3
    #: fraction of stdout a followed stream delivers before it only sends heartbeats
    #: (below 1: a stream that stalls, so only the allocation's end brings the rest).
    follow_fraction: float = 1.0
    #: heartbeats a followed stream sends before the fake ends it (bounded).
    follow_heartbeats: int = 40
    heartbeat_interval_s: float = 0.05
    never_finishes: bool = False
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    dispatches: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    results: dict[str, tuple[int, bytes, bytes]] = field(default_factory=dict)
    reads: dict[str, int] = field(default_factory=dict)
    evals: dict[str, str] = field(default_factory=dict)

    def client(self) -> NomadClient:
        return NomadClient("http://nomad.test:4646", transport=httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = unquote(request.url.raw_path.decode().split("?", 1)[0])
        self.requests.append((request.method, path))
        body = json.loads(request.content) if request.content else None
        if path == "/v1/jobs" and request.method == "PUT":
            job = body["Job"]
            self.registrations.append(job)
            self.jobs[job["ID"]] = {**job, "Stop": False, "Status": "running", "Version": 0}
            return httpx.Response(200, json={"EvalID": "", "JobModifyIndex": 5})
        if path.startswith("/v1/job/") and path.endswith("/dispatch"):
            return self._dispatch(path.removeprefix("/v1/job/").removesuffix("/dispatch"),
                                  request, body)  # fmt: skip
        if path.startswith("/v1/job/") and request.method == "GET":
            job_id = path.removeprefix("/v1/job/")
            if job_id.endswith("/allocations"):
                child = job_id.removesuffix("/allocations")
                return httpx.Response(
                    200, json=[self._alloc(child)] if child in self.results else []
                )
            if job_id not in self.jobs:
                return httpx.Response(404, text="job not found")
            return httpx.Response(200, json=self.jobs[job_id])
        if path.startswith("/v1/evaluation/") and path.endswith("/allocations"):
            child = self.evals[path.split("/")[3]]
            return httpx.Response(200, json=[self._alloc(child)])
        if path.startswith("/v1/allocation/"):
            return httpx.Response(200, json=self._alloc(self._child(path.split("/")[3])))
        if path.startswith("/v1/client/fs/logs/"):
            return self._logs(path.removeprefix("/v1/client/fs/logs/"), request.url.params)
        return httpx.Response(404, text="")

    def _dispatch(self, parent: str, request: httpx.Request, body: Any) -> httpx.Response:
        if parent not in self.jobs:
            return httpx.Response(500, text="parameterized job not found")
        params = self.jobs[parent]["ParameterizedJob"]
        meta = body.get("Meta") or {}
        allowed = set(params["MetaRequired"]) | set(params["MetaOptional"])
        if set(meta) - allowed:
            keys = sorted(set(meta) - allowed)
            return httpx.Response(
                500, text=f"Dispatch request included unpermitted metadata keys: {keys}"
            )
        missing = sorted(set(params["MetaRequired"]) - set(meta))
        if missing:
            return httpx.Response(
                500, text=f"Dispatch did not provide required meta keys: {missing}"
            )
        payload = b64.b64decode(body["Payload"]) if body.get("Payload") else None
        mode = params.get("Payload") or "optional"
        if payload and mode == "forbidden":
            return httpx.Response(500, text="Payload provided but forbidden by parameterized job")
        if payload and len(payload) > 16 * 1024:
            return httpx.Response(
                500, text=f"Payload exceeds maximum size; {len(payload)} > {16 * 1024}"
            )
        task = self.jobs[parent]["TaskGroups"][0]["Tasks"][0]
        if not (task.get("DispatchPayload") or {}).get("File"):
            payload = None  # Nomad writes no file: the task never sees it
        token = request.url.params.get("idempotency_token", "")
        self.dispatches.append({"meta": meta, "token": token, "body": body, "payload": payload})
        if token and token in self.tokens:
            return httpx.Response(200, json={"DispatchedJobID": self.tokens[token], "EvalID": ""})
        child = f"{parent}/dispatch-{int(time.time())}-{len(self.dispatches):08x}"
        self.tokens[token] = child
        reset = PAYLOAD.set(payload)
        try:
            self.results[child] = self.task(meta)
        finally:
            PAYLOAD.reset(reset)
        eval_id = f"eval-{len(self.dispatches)}"
        self.evals[eval_id] = child
        return httpx.Response(200, json={"DispatchedJobID": child, "EvalID": eval_id})

    def _child(self, alloc_id: str) -> str:
        return next(c for c in self.results if "alloc-" + c.replace("/", "-") == alloc_id)

    def _alloc(self, child: str) -> dict[str, Any]:
        alloc_id = "alloc-" + child.replace("/", "-")
        count = self.reads.get(child, 0)
        self.reads[child] = count + 1
        code = self.results[child][0]
        running = self.never_finishes or count < self.running_reads
        events: list[dict[str, Any]] = [{"Type": "Started", "DisplayMessage": "Task started"}]
        if not running:
            events.append({"Type": "Terminated", "DisplayMessage": f"Exit Code: {code}",
                           "Details": {"exit_code": str(code)}})  # fmt: skip
        status = "running" if running else ("complete" if code == 0 else "failed")
        return {
            "ID": alloc_id, "JobID": child, "ClientStatus": status, "DesiredStatus": "run",
            "ModifyIndex": 10 + count,
            "TaskStates": {"build": {"State": "running" if running else "dead",
                                     "Failed": not running and code != 0, "Events": events}},
        }  # fmt: skip

    def _logs(self, alloc_id: str, params: httpx.QueryParams) -> httpx.Response:
        child = self._child(alloc_id)
        _code, stdout, stderr = self.results[child]
        data = stdout if params.get("type") == "stdout" else stderr
        offset = int(params.get("offset", "0"))
        if params.get("origin") == "end":
            data = data[-offset:] if offset else b""
        else:
            data = data[offset:]
        if params.get("follow") == "true":
            cut = int(len(stdout) * self.follow_fraction) - offset
            data = data[: max(cut, 0)]
            return httpx.Response(200, content=self._followed(data))
        return httpx.Response(200, content=frames(data))

    def _followed(self, data: bytes) -> Iterator[bytes]:
        yield from frames(data)
        for _ in range(self.follow_heartbeats):  # bounded stand-in for "never ends"
            time.sleep(self.heartbeat_interval_s)
            yield b"{}"
