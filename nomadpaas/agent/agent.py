"""The agent: wires the state store, the node, and the HTTP server, then serves until
SIGINT/SIGTERM; mirrors command/agent/agent.go (+ command/agent/command.go's startup).

Data dir layout (see README.md): `server/state.db` (the state store), `client/client-id`
and `client/secret-id` (this node's stable identity).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.metadata
import logging
import os
import platform
import shutil
import signal
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.concurrency import run_in_threadpool

from nomadpaas.agent.acl import load_or_create_management_token
from nomadpaas.agent.client.allocrunner.alloc_runner import AllocRunner
from nomadpaas.agent.client.allocrunner.group_service_hook import GroupServiceHook
from nomadpaas.agent.client.allocrunner.health_hook import HealthHook
from nomadpaas.agent.client.allocrunner.taskrunner.service_hook import ServiceHook
from nomadpaas.agent.client.client import Client, ClientConfig
from nomadpaas.agent.client.serviceregistration.nomad_provider import NomadProvider
from nomadpaas.agent.client.serviceregistration.registry import ServiceRegistry
from nomadpaas.agent.consul.http import ConsulAPI
from nomadpaas.agent.consul.shapes import ConsulNode
from nomadpaas.agent.http.namespace_endpoint import ensure_default_namespace
from nomadpaas.agent.http.routes import build_router
from nomadpaas.agent.http.server import HTTPDeps, build_app
from nomadpaas.agent.server.server import Server
from nomadpaas.agent.server.state.events import attach as attach_event_broker
from nomadpaas.agent.server.state.schema import NODES
from nomadpaas.agent.server.state.state_store import StateStore, Txn
from nomadpaas.agent.server.stream.event_broker import DEFAULT_EVENT_BUFFER_SIZE, EventBroker
from nomadpaas.agent.server.stream.ndjson import DEFAULT_HEARTBEAT_S
from nomadpaas.agent.server.variables_endpoint import Variables
from nomadpaas.agent.structs.node import fingerprint_node

log = logging.getLogger("nomadpaas.agent")

# The Nomad version the agent speaks; VersionMetadata says it is nomadpaas, not Nomad.
NOMAD_VERSION = "1.9.7"
REGION = "global"
DATACENTER = "dc1"
RPC_PORT = 4647  # reported, never bound: there is no RPC listener
SERF_PORT = 4648
GRACEFUL_SHUTDOWN_S = 2  # parked long-polls are cut after this on SIGTERM
#: How long an idle keep-alive connection stays open. Nomad's (and Consul's) Go HTTP
#: server sets no idle timeout, and clients such as python-nomad's requests session
#: reuse a pooled connection without retrying: with uvicorn's 5 s default, a request
#: sent just as the server closed the connection met "Connection reset by peer".
#: A day is "never" for any polling client and still reaps abandoned connections.
HTTP_IDLE_TIMEOUT_S = 24 * 3600
MSG_NODE_REGISTER = "NodeRegisterRequestType"


def _nomadpaas_version() -> str:
    try:
        return importlib.metadata.version("nomadpaas")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


@dataclass
class AgentConfig:
    """`nomadpaas agent` flags. `data_dir=None` makes a fresh temp dir (like -dev)."""

    dev: bool = True
    bind: str = "127.0.0.1"
    http_port: int = 4646
    consul_port: int = 8500  # the Consul-compatible API (consul/http.py)
    data_dir: Path | None = None
    acl_token_file: Path | None = None
    log_level: str = "INFO"
    region: str = REGION
    datacenter: str = DATACENTER
    node_name: str = field(default_factory=socket.gethostname)
    # `-meta key=value` (repeatable): the node's Meta, for ${meta.<key>} and constraints.
    meta: Mapping[str, str] = field(default_factory=dict)
    # -- event stream (issue 4): no CLI flags yet; the environment overrides (tests).
    event_buffer_size: int = field(
        default_factory=lambda: int(
            os.environ.get("NOMADPAAS_AGENT_EVENT_BUFFER_SIZE", DEFAULT_EVENT_BUFFER_SIZE)
        )
    )
    event_heartbeat_s: float = field(
        default_factory=lambda: float(
            os.environ.get("NOMADPAAS_AGENT_EVENT_HEARTBEAT_S", DEFAULT_HEARTBEAT_S)
        )
    )
    # -- end event stream


class Agent:
    """One agent process: `Agent(config).run()` blocks until a signal stops it."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        # Like `nomad agent -dev`: without --data-dir the state is throwaway, removed on exit.
        self._ephemeral = config.data_dir is None
        self.data_dir = (
            config.data_dir
            if config.data_dir is not None
            else Path(tempfile.mkdtemp(prefix="nomadpaas-agent-"))
        ).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.acl_token = (
            load_or_create_management_token(config.acl_token_file)
            if config.acl_token_file is not None
            else None
        )
        self.http_addr = f"{config.bind}:{config.http_port}"
        self.store = StateStore(self.data_dir / "server" / "state.db")
        # -- event stream (issue 4): every commit from here on becomes events.
        self.event_broker = EventBroker(config.event_buffer_size)
        attach_event_broker(self.store, self.event_broker)
        # -- end event stream
        self.variables = Variables(self.store)
        ensure_default_namespace(self.store)
        self.node_id = self._register_node()
        # Jobs, evaluations and scheduling; its workers start in run().
        self.server = Server(self.store)
        # -- services (issue 4): the node's service registry and checks (both providers);
        # the Consul-compatible API on --consul-port serves its Consul-provider instances.
        self.services = ServiceRegistry(
            self.node_id,
            config.node_name,
            config.datacenter,
            NomadProvider(self.store, self.node_id, config.datacenter),
        )
        # -- end services
        # -- client (issue 3): the node's alloc runners, fed through the node RPC; it
        # re-attaches to tasks left running by an earlier agent when started in run().
        node = self.store.snapshot().get(NODES, (self.node_id,)) or {"ID": self.node_id}
        self.client = Client(
            ClientConfig(
                self.data_dir,
                dict(node),
                runner_hooks=self._runner_hooks,
                task_hooks=lambda: [ServiceHook(self.services)],  # task services (issue 4)
            ),
            self.server.node_rpc,
        )
        # -- end client
        self._self_doc = self._build_self()
        deps = HTTPDeps(
            store=self.store,
            variables=self.variables,
            agent_self=lambda: self._self_doc,
            node_id=self.node_id,
            acl_token=self.acl_token,
            bind_addr=config.bind,
            server=self.server,
            extra={"client": self.client, "services": self.services},
            event_broker=self.event_broker,  # event stream (issue 4)
            event_heartbeat_s=config.event_heartbeat_s,  # event stream (issue 4)
        )
        self.app = build_app(build_router(), deps)
        consul_node = ConsulNode(self.node_id, config.node_name, config.datacenter)
        self.consul_app = ConsulAPI(  # services (issue 4)
            self.services, consul_node, bind_addr=config.bind, acl_token=self.acl_token
        ).app()

    def _runner_hooks(self, runner: AllocRunner) -> list[Any]:
        """Each alloc runner's issue-4 hooks, in order (they run after the alloc dir
        is built and, on stop, before the group ShutdownDelay)."""
        return [
            GroupServiceHook(self.services),  # deregisters before the delay
            HealthHook(runner, self.services),  # deployments (issue 4): alloc health
        ]

    # -- node ------------------------------------------------------------------------

    def _client_file(self, name: str) -> str:
        """A persisted client identity value (`client/client-id`), created once."""
        path = self.data_dir / "client" / name
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        value = str(uuid.uuid4())
        tmp = path.with_suffix(".tmp")
        tmp.write_text(value)
        os.replace(tmp, path)
        return value

    def _register_node(self) -> str:
        node = fingerprint_node(
            self._client_file("client-id"),
            self._client_file("secret-id"),
            datacenter=self.config.datacenter,
            http_addr=self.http_addr,
            data_dir=self.data_dir,
            nomad_version=NOMAD_VERSION,
        )
        node["Meta"] = {**(node.get("Meta") or {}), **self.config.meta}

        def txn_fn(txn: Txn) -> None:
            old = txn.get(NODES, (node["ID"],))
            node["CreateIndex"] = old["CreateIndex"] if old is not None else txn.index
            node["ModifyIndex"] = txn.index
            node["Events"][0]["CreateIndex"] = node["CreateIndex"]
            txn.put(NODES, (node["ID"],), node)

        self.store.write(MSG_NODE_REGISTER, txn_fn)
        return str(node["ID"])

    # -- /v1/agent/self --------------------------------------------------------------

    def _build_self(self) -> dict[str, Any]:
        c = self.config
        version = {
            "Version": NOMAD_VERSION,
            "VersionPrerelease": "",
            "VersionMetadata": f"nomadpaas.{_nomadpaas_version()}",
            "Revision": "",
            "BuildDate": "",
        }
        tags = {
            "region": c.region, "dc": c.datacenter, "role": "nomad", "build": NOMAD_VERSION,
            "port": str(RPC_PORT), "bootstrap": "1", "expect": "1", "vsn": "1",
        }  # fmt: skip
        return {
            "config": {
                "Region": c.region,
                "Datacenter": c.datacenter,
                "NodeName": c.node_name,
                "DataDir": str(self.data_dir),
                "BindAddr": c.bind,
                "Addresses": {"HTTP": c.bind, "RPC": c.bind, "Serf": c.bind},
                "Ports": {"HTTP": c.http_port, "RPC": RPC_PORT, "Serf": SERF_PORT},
                "Version": version,
                "ACL": {"Enabled": self.acl_token is not None},
                "Client": {"Enabled": True, "NodeClass": "", "NodePool": "default"},
                "Server": {"Enabled": True, "BootstrapExpect": 1},
                "Consul": {"Address": f"{c.bind}:{c.consul_port}"},
                "DevMode": c.dev,
            },
            "member": {
                "Name": f"{c.node_name}.{c.region}",
                "Addr": c.bind,
                "Port": SERF_PORT,
                "Tags": tags,
                "Status": "alive",
                "ProtocolMin": 1,
                "ProtocolMax": 5,
                "ProtocolCur": 2,
                "DelegateMin": 2,
                "DelegateMax": 5,
                "DelegateCur": 4,
            },
            "stats": {
                "nomad": {
                    "server": "true", "leader": "true", "bootstrap": "true",
                    "known_regions": "1", "leader_addr": f"127.0.0.1:{RPC_PORT}",
                },
                "client": {"node_id": self.node_id, "known_servers": f"127.0.0.1:{RPC_PORT}",
                           "num_allocations": "0", "heartbeat_ttl": "0"},
                "runtime": {
                    "arch": platform.machine(), "version": platform.python_version(),
                    "cpu_count": str(os.cpu_count() or 1), "kernel.name": sys.platform,
                },
            },
        }  # fmt: skip

    # -- lifecycle -------------------------------------------------------------------

    def run(self) -> None:
        """Serve HTTP until SIGINT/SIGTERM, then close the state store."""
        c = self.config
        log.info("==> Nomad agent configuration (nomadpaas embedded agent, dev mode):")
        log.info("       Client: true, Server: true, ACLs: %s", self.acl_token is not None)
        log.info("    Data Dir: %s", self.data_dir)
        log.info("     HTTP Addr: http://%s  Node ID: %s", self.http_addr, self.node_id)
        log.info("==> Nomad agent started! Log data will stream in below:")
        server = _Server(
            uvicorn.Config(
                self.app,
                host=c.bind,
                port=c.http_port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                timeout_keep_alive=HTTP_IDLE_TIMEOUT_S,
            )
        )
        try:
            self.server.start()
            self.services.start()  # services (issue 4)
            asyncio.run(self._serve(server))
        finally:
            self._stop_client()
            self.services.stop()  # services (issue 4): after the client deregistered
            self.server.stop()
            self.event_broker.close()  # event stream (issue 4); idempotent
            self.store.close()
            if self._ephemeral:
                shutil.rmtree(self.data_dir, ignore_errors=True)
            log.info("==> Nomad agent shut down")

    async def _serve(self, server: uvicorn.Server) -> None:
        loop = asyncio.get_running_loop()
        consul = _Server(  # services (issue 4): the Consul API, same loop, own port
            uvicorn.Config(
                self.consul_app,
                host=self.config.bind,
                port=self.config.consul_port,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                timeout_keep_alive=HTTP_IDLE_TIMEOUT_S,
            )
        )

        def stop(signame: str) -> None:
            log.info("==> Caught signal: %s", signame)
            server.should_exit = True
            consul.should_exit = True  # services (issue 4)
            self.services.interrupt()  # parked Consul blocking queries answer now
            # Parked long-polls answer now instead of holding shutdown for up to 5 min.
            self.store.interrupt_blocking()
            self.event_broker.close()  # event streams end now (issue 4)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop, sig.name)
        # Before the first request, not in it: the thread pool that serves blocking
        # endpoints starts (and anyio imports its backend) on first use, some 25 ms.
        await run_in_threadpool(lambda: None)
        serving = asyncio.create_task(server.serve())
        consul_serving = asyncio.create_task(consul.serve())  # services (issue 4)
        # The client starts once HTTP is up (its restore may take a moment per task).
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if server.started:
            await asyncio.to_thread(self.client.start)
        await serving
        await consul_serving  # services (issue 4)

    def _stop_client(self) -> None:
        """SIGTERM leaves every task running (Nomad's agent shutdown does not kill
        allocations); a throwaway data dir is about to be deleted, so its tasks die."""
        try:
            if self._ephemeral:
                self.client.destroy_all()
            self.client.shutdown()
        except Exception:
            log.exception("client shutdown failed")


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture: it re-raises the signal after shutdown,
    which would kill the process before the state store is closed."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def main(config: AgentConfig) -> int:
    """Run an agent in this process; returns the exit code."""
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, config.log_level.upper(), logging.INFO),
        format="    %(asctime)s [%(levelname)s] %(name)s: %(message)s",
    )
    agent = Agent(config)
    _tune_gc()
    agent.run()
    return 0


#: The cyclic collector's generation-0 threshold in the agent (CPython's default: 700). An
#: agent allocates many short-lived container objects per allocation (rows, task states,
#: events), and a full collection stops every thread while it walks all of them.
GC_GEN0_THRESHOLD = 20_000


def _tune_gc() -> None:
    """Fewer collections, and none that walk the start-up objects (modules, routes, the
    restored state): they are frozen into the permanent generation."""
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
