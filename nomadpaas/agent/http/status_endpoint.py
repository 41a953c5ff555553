"""`/v1/status/leader`, `/v1/status/peers`, `/v1/regions`; mirrors
command/agent/status_endpoint.go and region_endpoint.go.

The single agent is its own raft leader; Nomad serves these two status paths without an
ACL token, so they double as the readiness probe.
"""

from __future__ import annotations

from nomadpaas.agent.http.server import HTTPRequest, Reply, Router

# Nomad's default RPC address, which is what `status/leader` reports.
LEADER_RPC_ADDR = "127.0.0.1:4647"
REGION = "global"


def register(router: Router) -> None:
    router.add("GET", "/v1/status/leader", status_leader, anonymous=True)
    router.add("GET", "/v1/status/peers", status_peers, anonymous=True)
    router.add("GET", "/v1/regions", regions)


async def status_leader(req: HTTPRequest) -> Reply:
    return Reply(LEADER_RPC_ADDR)


async def status_peers(req: HTTPRequest) -> Reply:
    return Reply([LEADER_RPC_ADDR])


async def regions(req: HTTPRequest) -> Reply:
    return Reply([REGION])
