"""The agent's HTTP server: one route table, one error wrap, Host guard, ACL check,
Nomad's response headers and blocking queries; mirrors command/agent/http.go.

A handler is `async def handler(req: HTTPRequest) -> Reply | (obj, index) | Response`.
It raises `CodedError` (errors.py) for anything but 200; the wrap turns that into the
status and a plain-text body, and anything uncoded into a 500. Endpoint modules add
their routes with `register(router)`; routes.py holds the one list of those modules.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nomadpaas.agent.http.decode import DecodeError, Spec, decode_body
from nomadpaas.agent.http.errors import (
    ERR_INVALID_METHOD,
    ERR_PERMISSION_DENIED,
    ERR_TOKEN_NOT_FOUND,
    CodedError,
)
from nomadpaas.agent.http.query import BlockingOptions, parse_blocking
from nomadpaas.agent.server.state.state_store import Snapshot, StateStore
from nomadpaas.agent.server.variables_endpoint import Variables

if TYPE_CHECKING:
    from nomadpaas.agent.server.server import Server
    from nomadpaas.agent.server.stream.event_broker import EventBroker  # event stream

log = logging.getLogger("nomadpaas.agent.http")

T = TypeVar("T")
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
TEXT_PLAIN = "text/plain; charset=utf-8"
DEFAULT_NAMESPACE = "default"


@dataclass
class HTTPDeps:
    """What handlers reach through `req.deps`."""

    store: StateStore
    variables: Variables
    agent_self: Callable[[], dict[str, Any]]  # the /v1/agent/self document
    node_id: str
    acl_token: str | None  # the management SecretID; None = ACLs disabled
    bind_addr: str = "127.0.0.1"
    # Jobs, node RPC, eval broker: the scheduling endpoints answer 500 without it.
    server: Server | None = None
    # -- event stream (issue 4): /v1/event/stream answers 500 without a broker.
    event_broker: EventBroker | None = None
    event_heartbeat_s: float = 30.0  # `{}` every this many seconds (Nomad: 30 s)
    # -- end event stream
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reply:
    """A handler's answer: JSON `body`, `X-Nomad-Index` (None = no header), status."""

    body: Any
    index: int | None = None
    status: int = 200


HandlerResult = Reply | tuple[Any, int] | Response
Handler = Callable[["HTTPRequest"], Awaitable[HandlerResult]]


class HTTPRequest:
    """One request as handlers see it: path params, query, body, deps, blocking reads."""

    def __init__(self, request: Request, params: dict[str, str], deps: HTTPDeps) -> None:
        self.raw = request
        self.method = request.method
        self.params = params
        self.query: QueryParams = request.query_params
        self.deps = deps
        self._blocking: BlockingOptions | None = None

    @property
    def store(self) -> StateStore:
        return self.deps.store

    def namespace(self) -> str:
        """`?namespace=`, else `default` (`*` passes through for list endpoints)."""
        return self.query.get("namespace") or DEFAULT_NAMESPACE

    @property
    def blocking_options(self) -> BlockingOptions:
        if self._blocking is None:
            self._blocking = parse_blocking(self.query)
        return self._blocking

    async def blocking_query(self, query: Callable[[Snapshot], tuple[T, int]]) -> tuple[T, int]:
        """Run a read as a Nomad blocking query (`?index=&wait=`); returns (result, index)."""
        opts = self.blocking_options

        def at_least_one(snap: Snapshot) -> tuple[T, int]:
            # Never report index 0: a client would send it back and never block (Nomad
            # and Consul clamp the same way).
            result, index = query(snap)
            return result, max(index, 1)

        return await self.store.blocking_query_async(at_least_one, opts.min_index, opts.wait_s)

    async def body(self) -> bytes:
        return await self.raw.body()

    async def decode(self, spec: Spec) -> Any:
        """The body decoded by `spec` (decode.py); 400 when empty or malformed."""
        return decode_body(await self.body(), spec)

    async def run_write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a state-store write off the event loop (it blocks on fsync)."""
        return await run_in_threadpool(fn, *args)


@dataclass(frozen=True)
class _Route:
    methods: frozenset[str]  # empty = every method; the handler checks
    pattern: re.Pattern[str]
    handler: Handler
    anonymous: bool  # served without an ACL token (status/leader, status/peers)
    bad_method_code: int


class Router:
    """The one route table. Patterns: `/v1/node/{node_id}`, `/v1/var/{path:path}`."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []

    def add(
        self,
        methods: str | Iterable[str],
        pattern: str,
        handler: Handler,
        *,
        anonymous: bool = False,
        bad_method_code: int = 405,
    ) -> None:
        """Route `methods` ("GET", ("PUT", "POST") or "*") on `pattern` to `handler`."""
        names = (methods,) if isinstance(methods, str) else tuple(methods)
        wanted = frozenset() if "*" in names else frozenset(m.upper() for m in names)
        if "GET" in wanted:
            wanted |= {"HEAD"}
        self._routes.append(_Route(wanted, _compile(pattern), handler, anonymous, bad_method_code))

    def match(self, method: str, path: str) -> tuple[_Route, dict[str, str]] | CodedError | None:
        """The route and params; a CodedError for a known path with a wrong method; None."""
        wrong_method: _Route | None = None
        for route in self._routes:
            m = route.pattern.match(path)
            if m is None:
                continue
            if not route.methods or method in route.methods:
                return route, m.groupdict()
            wrong_method = wrong_method or route
        if wrong_method is not None:
            return CodedError(wrong_method.bad_method_code, ERR_INVALID_METHOD)
        return None


def _compile(pattern: str) -> re.Pattern[str]:
    def param(m: re.Match[str]) -> str:
        name, _, conv = m.group(1).partition(":")
        return f"(?P<{name}>.*)" if conv == "path" else f"(?P<{name}>[^/]+)"

    regex = re.sub(r"\\\{([^}]+)\\\}", param, re.escape(pattern))
    return re.compile(f"^{regex}$")


# -- guards ---------------------------------------------------------------------------


def host_allowed(host_header: str | None, bind_addr: str) -> bool:
    """The DNS-rebinding guard: only loopback names/addresses (or the bind address)."""
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        name = host.rsplit(":", 1)[0]
    else:
        name = host
    name = name.rstrip(".")
    if name == "localhost" or name == bind_addr.lower().strip("[]"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def request_token(request: Request) -> str | None:
    """`X-Nomad-Token`, else `Authorization: Bearer <secret>`."""
    token = request.headers.get("x-nomad-token")
    if token:
        return token
    auth = request.headers.get("authorization", "")
    scheme, _, secret = auth.partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return secret.strip()
    return None


def check_acl(request: Request, management_token: str | None) -> None:
    if management_token is None:
        return
    token = request_token(request)
    if token is None:
        raise CodedError(403, ERR_PERMISSION_DENIED)
    if not hmac.compare_digest(token.encode(), management_token.encode()):
        raise CodedError(403, ERR_TOKEN_NOT_FOUND)


# -- rendering ------------------------------------------------------------------------


def text_response(status: int, message: str) -> Response:
    return Response(message, status_code=status, media_type=TEXT_PLAIN)


def _pretty(query: QueryParams) -> bool:
    # Nomad: `?pretty` or `?pretty=<anything but 0>` indents.
    if "pretty" not in query:
        return False
    value = query.get("pretty", "")
    return value == "" or value != "0"


def json_response(reply: Reply, request: Request) -> Response:
    headers: dict[str, str] = {}
    if reply.index is not None:
        headers["X-Nomad-Index"] = str(reply.index)
    if request.method in ("GET", "HEAD"):
        # A single agent is always its own leader with no replication lag.
        headers["X-Nomad-KnownLeader"] = "true"
        headers["X-Nomad-LastContact"] = "0"
    if reply.status == 204:
        return Response(status_code=204, headers=headers)
    if _pretty(request.query_params):
        body = json.dumps(reply.body, indent=4, ensure_ascii=False) + "\n"
    else:
        body = json.dumps(reply.body, separators=(",", ":"), ensure_ascii=False)
    return Response(body, status_code=reply.status, headers=headers, media_type="application/json")


# -- the app ---------------------------------------------------------------------------


Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def _no_lifespan(app: Starlette) -> AsyncIterator[None]:
    yield


def build_app(router: Router, deps: HTTPDeps, lifespan: Lifespan | None = None) -> Starlette:
    """The ASGI app: guards, route match, handler, error wrap, rendering."""

    async def dispatch(request: Request) -> Response:
        started = time.monotonic()
        response = await _handle(request)
        log.debug(
            "%s %s -> %d (%.1f ms)",
            request.method,
            request.url.path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    async def _handle(request: Request) -> Response:
        if not host_allowed(request.headers.get("host"), deps.bind_addr):
            return text_response(
                403, "Invalid Host header: only loopback hosts may call this agent"
            )
        found = router.match(request.method, request.url.path)
        if found is None:
            return Response(status_code=404)
        if isinstance(found, CodedError):
            return text_response(found.code, found.message)
        route, params = found
        try:
            if not route.anonymous:
                check_acl(request, deps.acl_token)
            out = await route.handler(HTTPRequest(request, params, deps))
        except CodedError as err:
            return text_response(err.code, err.message)
        except DecodeError as err:
            return text_response(400, str(err))
        except Exception as err:  # the wrap: anything uncoded is a 500, as in Nomad
            log.exception("%s %s failed", request.method, request.url.path)
            return text_response(500, str(err) or type(err).__name__)
        if isinstance(out, Response):
            return out
        reply = out if isinstance(out, Reply) else Reply(out[0], out[1])
        return json_response(reply, request)

    return Starlette(
        routes=[Route("/{rest:path}", dispatch, methods=list(ALL_METHODS))],
        lifespan=lifespan or _no_lifespan,
    )
