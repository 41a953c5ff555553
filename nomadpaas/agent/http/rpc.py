"""Calling the server "RPC" from a handler: off the event loop, RPC errors coded;
mirrors the `s.agent.RPC(...)` + error wrap step of command/agent/http.go.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from nomadpaas.agent.http.errors import ERR_INVALID_METHOD, CodedError
from nomadpaas.agent.http.server import HTTPRequest
from nomadpaas.agent.server.errors import RPCError
from nomadpaas.agent.server.server import Server

T = TypeVar("T")

# Fields of QueryMeta that Nomad's write responses embed next to `Index`.
QUERY_META = {"LastContact": 0, "KnownLeader": False, "NextToken": ""}


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a (blocking) RPC method in a thread; an RPCError becomes a CodedError."""
    try:
        return await run_in_threadpool(functools.partial(fn, *args, **kwargs))
    except RPCError as err:
        raise CodedError(err.code, err.message) from err


def with_query_meta(reply: dict[str, Any]) -> dict[str, Any]:
    return {**reply, **QUERY_META}


def server_of(req: HTTPRequest) -> Server:
    """The running server (scheduling endpoints need it; tests may build apps without)."""
    server = req.deps.server
    if server is None:
        raise CodedError(500, "server not running")
    return server


def require_methods(req: HTTPRequest, *allowed: str) -> None:
    """405 `Invalid method` unless the request uses one of `allowed` (GET implies HEAD)."""
    wanted = set(allowed) | ({"HEAD"} if "GET" in allowed else set())
    if req.method not in wanted:
        raise CodedError(405, ERR_INVALID_METHOD)
