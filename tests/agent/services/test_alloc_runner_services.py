"""Group and task service hooks inside the real alloc runner / task runner (real raw_exec
process serving HTTP on its allocated port), wired the way the client wires them: the
task's service registers once it runs, and on stop it is deregistered, then `Waiting for
shutdown delay`, then the kill signal — proven with the task's own SIGINT timestamp."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent.client.client_support import NODE, event_types, make_alloc, pinned_tracker
from agent.services.services_support import wait_for
from testsupport import free_port

from nomadpaas.agent.client.allocrunner.alloc_runner import AllocRunner, AllocRunnerConfig
from nomadpaas.agent.client.allocrunner.group_service_hook import GroupServiceHook
from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import TaskHook
from nomadpaas.agent.client.allocrunner.taskrunner.service_hook import ServiceHook
from nomadpaas.agent.client.allocrunner.taskrunner.task_runner_hooks import build_task_hooks
from nomadpaas.agent.client.logmon.logmon import LogMon
from nomadpaas.agent.client.serviceregistration.registry import ServiceRegistry
from nomadpaas.agent.client.state import ClientStateDB
from nomadpaas.agent.drivers.rawexec.driver import RawExecDriver
from nomadpaas.agent.structs.duration import NS_PER_S

TASK_DELAY_S = 2
SERVER = """
import http.server, os, signal, time
def on_int(signum, frame):
    with open(os.environ["SIGINT_FILE"], "w") as f:
        f.write(repr(time.time()))
    os._exit(0)
signal.signal(signal.SIGINT, on_int)
port = int(os.environ["NOMAD_PORT_http"])
handler = http.server.SimpleHTTPRequestHandler
http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
"""


@pytest.fixture
def registry() -> Iterator[ServiceRegistry]:
    reg = ServiceRegistry(NODE["ID"], NODE["Name"], "dc1")
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


def service_alloc(port: int, sigint_file: Path) -> dict[str, Any]:
    check = {"Type": "http", "Path": "/", "Interval": 1 * NS_PER_S, "Timeout": 2 * NS_PER_S}
    task = {
        "Name": "server",
        "Driver": "raw_exec",
        "Config": {"command": "python3", "args": ["-u", "-c", SERVER]},
        "Env": {"SIGINT_FILE": str(sigint_file)},
        "ShutdownDelay": TASK_DELAY_S * NS_PER_S,
        "Services": [{"Name": "task-web", "PortLabel": "http", "Checks": [check]}],
    }
    alloc = make_alloc(
        [task],
        group_extra={"Services": [{"Name": "group-web", "PortLabel": "http",
                                   "Checks": [{**check, "Type": "tcp"}]}]},
    )  # fmt: skip
    alloc["AllocatedResources"] = {
        "Shared": {"Ports": [{"Label": "http", "Value": port, "To": 0, "HostIP": "127.0.0.1"}]}
    }
    return alloc


def test_task_service_deregisters_before_the_task_shutdown_delay(
    registry: ServiceRegistry, tmp_path: Path
) -> None:
    driver, logmon = RawExecDriver(), LogMon()
    sigint_file = tmp_path / "sigint"
    alloc = service_alloc(free_port(), sigint_file)
    gone_at: list[float] = []

    def on_change(index: int) -> None:
        if not gone_at and not registry.instances(name="task-web"):
            gone_at.append(time.time())

    def task_hooks() -> list[TaskHook]:
        return [*build_task_hooks(logmon), ServiceHook(registry)]

    runner = AllocRunner(
        AllocRunnerConfig(
            alloc=alloc, data_dir=str(tmp_path), driver=driver,
            state_db=ClientStateDB(tmp_path), node=NODE, updater=lambda u, urgent: None,
            task_hooks=task_hooks, tracker_factory=pinned_tracker,
            extra_hooks=lambda r: [GroupServiceHook(registry)],
        )
    )  # fmt: skip
    try:
        runner.run()
        # The group service registers at prerun, the task's once the task runs.
        wait_for(lambda: len(registry.instances()) == 2)
        wait_for(lambda: registry.alloc_checks(alloc["ID"]).healthy)
        ids = sorted(r.instance.id for r in registry.instances())
        assert ids == [
            f"_nomad-task-{alloc['ID']}-group-g-group-web-http",
            f"_nomad-task-{alloc['ID']}-server-task-web-http",
        ]
        registry.subscribe(on_change)
        runner.update({**alloc, "DesiredStatus": "stop"})
        assert runner.wait_done(60), runner.task_states()
    finally:
        runner.kill(prekill=False)
        runner.shutdown()
        for task_id in driver.task_ids():
            driver.destroy_task(task_id, force=True)
        logmon.close()
    sigint_at = float(sigint_file.read_text())
    assert gone_at and TASK_DELAY_S - 0.5 <= sigint_at - gone_at[0] <= TASK_DELAY_S + 15
    types = event_types(runner.task_states()["server"])
    assert types[-4:] == ["Killing", "Waiting for shutdown delay", "Terminated", "Killed"]
    assert registry.instances() == []
