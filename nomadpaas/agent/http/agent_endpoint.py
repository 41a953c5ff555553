"""`/v1/agent/self`, `/v1/agent/members`, `/v1/agent/health`; mirrors
command/agent/agent_endpoint.go.
"""

from __future__ import annotations

from nomadpaas.agent.http.server import HTTPRequest, Reply, Router


def register(router: Router) -> None:
    router.add("GET", "/v1/agent/self", agent_self)
    router.add("GET", "/v1/agent/members", agent_members)
    router.add("GET", "/v1/agent/health", agent_health)


async def agent_self(req: HTTPRequest) -> Reply:
    return Reply(req.deps.agent_self())


async def agent_members(req: HTTPRequest) -> Reply:
    member = req.deps.agent_self()["member"]
    return Reply({"ServerName": member["Name"], "ServerRegion": "global", "ServerDC": "dc1",
                  "Members": [member]})  # fmt: skip


async def agent_health(req: HTTPRequest) -> Reply:
    ok = {"ok": True, "message": "ok"}
    return Reply({"client": ok, "server": ok})
