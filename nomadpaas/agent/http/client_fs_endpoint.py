"""`/v1/client/fs/{logs,stream,ls,stat,cat,readat}/:alloc`: task logs and allocation files;
mirrors command/agent/fs_endpoint.go (+ the client side, client/fs_endpoint.go).

Logs and streams are Starlette StreamingResponses: back-to-back JSON frames with 1 s `{}`
heartbeats (`application/json`), or the raw bytes with `plain=true` (`text/plain`). Every
error is answered before the first byte; a follow stream ends only when the client
disconnects (Nomad #4663: not when the allocation stops).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from starlette.responses import Response, StreamingResponse

from nomadpaas.agent.client.allocrunner.alloc_runner import AllocRunner
from nomadpaas.agent.client.fs import (
    FileFollower,
    FSError,
    LogFollower,
    stream_body,
    validate_log_request,
)
from nomadpaas.agent.client.fsinfo import list_dir, read_at, stat_path
from nomadpaas.agent.http.errors import CodedError
from nomadpaas.agent.http.query import query_bool
from nomadpaas.agent.http.server import HTTPRequest, Reply, Router
from nomadpaas.agent.structs.alloc import ZERO_TIME

CLIENT_KEY = "client"  # HTTPDeps.extra key holding the node's Client
MEDIA_FRAMES = "application/json"
MEDIA_PLAIN = "text/plain; charset=utf-8"
MEDIA_BYTES = "text/plain; charset=utf-8"


class RunnerLookup(Protocol):
    def runner(self, alloc_id: str) -> AllocRunner | None: ...


def register(router: Router) -> None:
    router.add("GET", "/v1/client/fs/logs/{alloc_id}", fs_logs)
    router.add("GET", "/v1/client/fs/stream/{alloc_id}", fs_stream)
    router.add("GET", "/v1/client/fs/ls/{alloc_id}", fs_ls)
    router.add("GET", "/v1/client/fs/stat/{alloc_id}", fs_stat)
    router.add("GET", "/v1/client/fs/cat/{alloc_id}", fs_cat)
    router.add("GET", "/v1/client/fs/readat/{alloc_id}", fs_readat)


def alloc_runner(req: HTTPRequest) -> AllocRunner:
    """The runner of `:alloc_id` on this node; 404 `Unknown allocation "<id>"` otherwise."""
    alloc_id = req.params["alloc_id"]
    client: RunnerLookup | None = req.deps.extra.get(CLIENT_KEY)
    runner = client.runner(alloc_id) if client is not None else None
    if runner is None:
        raise CodedError(404, f'Unknown allocation "{alloc_id}"')
    return runner


def _int_param(req: HTTPRequest, name: str, default: int) -> int:
    raw = req.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise CodedError(400, f'Failed to parse {name} field to int: "{raw}"') from None


def _coded(exc: FSError) -> CodedError:
    return CodedError(exc.code, exc.message)


def _root(runner: AllocRunner) -> Path:
    return Path(runner.alloc_dir.root)


async def fs_logs(req: HTTPRequest) -> Response:
    task = req.query.get("task", "")
    log_type = req.query.get("type", "")
    origin = req.query.get("origin") or "start"
    follow = query_bool(req.query, "follow")
    plain = query_bool(req.query, "plain")
    offset = _int_param(req, "offset", 0)
    try:
        validate_log_request(task, log_type, origin)
    except FSError as exc:
        raise _coded(exc) from None
    runner = alloc_runner(req)
    state: dict[str, Any] | None = runner.task_states().get(task)
    started = state is not None and state.get("StartedAt", ZERO_TIME) != ZERO_TIME
    try:
        follower = LogFollower(
            _root(runner), task, log_type, origin=origin, offset=offset, follow=follow,
            task_names=list(runner.tasks), task_started=started,
        )  # fmt: skip
    except FSError as exc:
        raise _coded(exc) from None
    return StreamingResponse(
        stream_body(follower, plain=plain), media_type=MEDIA_PLAIN if plain else MEDIA_FRAMES
    )


async def fs_stream(req: HTTPRequest) -> Response:
    path = req.query.get("path", "")
    origin = req.query.get("origin") or "start"
    follow = query_bool(req.query, "follow", default=True)
    plain = query_bool(req.query, "plain")
    offset = _int_param(req, "offset", 0)
    runner = alloc_runner(req)
    try:
        follower = FileFollower(_root(runner), path, offset=offset, origin=origin, follow=follow)
    except FSError as exc:
        raise _coded(exc) from None
    return StreamingResponse(
        stream_body(follower, plain=plain), media_type=MEDIA_PLAIN if plain else MEDIA_FRAMES
    )


async def fs_ls(req: HTTPRequest) -> Reply:
    runner = alloc_runner(req)
    try:
        return Reply(list_dir(_root(runner), req.query.get("path") or "/"))
    except FSError as exc:
        raise _coded(exc) from None


async def fs_stat(req: HTTPRequest) -> Reply:
    runner = alloc_runner(req)
    try:
        return Reply(stat_path(_root(runner), req.query.get("path") or "/"))
    except FSError as exc:
        raise _coded(exc) from None


async def fs_cat(req: HTTPRequest) -> Response:
    runner = alloc_runner(req)
    path = req.query.get("path", "")
    if not path:
        raise CodedError(400, "must provide a file path")
    try:
        chunks = read_at(_root(runner), path)
    except FSError as exc:
        raise _coded(exc) from None
    return StreamingResponse(chunks, media_type=MEDIA_BYTES)


async def fs_readat(req: HTTPRequest) -> Response:
    runner = alloc_runner(req)
    path = req.query.get("path", "")
    if not path:
        raise CodedError(400, "must provide a file path")
    offset = _int_param(req, "offset", 0)
    limit = _int_param(req, "limit", -1)
    try:
        chunks = read_at(_root(runner), path, offset, limit)
    except FSError as exc:
        raise _coded(exc) from None
    return StreamingResponse(chunks, media_type=MEDIA_BYTES)
