"""`nomadpaas agent -meta KEY=VALUE`: the node's Meta, as Nomad's flag sets it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import typer
from testsupport import agent_process

from nomadpaas.agent.drivers.rawexec.driver import kill_orphaned_tasks
from nomadpaas.cli.agent import parse_meta


def test_meta_flags_become_the_node_s_meta(tmp_path: Path) -> None:
    server = agent_process(
        tmp_path / "agent",
        log_path=tmp_path / "agent.log",
        extra_args=[
            "-meta", "nomadpaas.build_cache_dir=/srv/cache",
            "--meta", "rack=r1",
            "-meta", "rack=r2",  # a later value wins
        ],
    )  # fmt: skip
    server.start()
    try:
        nodes = httpx.get(f"{server.url}/v1/nodes", timeout=30).json()
        assert len(nodes) == 1
        node = httpx.get(f"{server.url}/v1/node/{nodes[0]['ID']}", timeout=30).json()
    finally:
        server.kill()
        kill_orphaned_tasks(str(server.data_dir))
    assert node["Meta"] == {"nomadpaas.build_cache_dir": "/srv/cache", "rack": "r2"}


def test_meta_values_may_hold_equals_signs_but_need_a_key() -> None:
    assert parse_meta(["a=b=c", "empty="]) == {"a": "b=c", "empty": ""}
    for bad in ("novalue", "=x", " =x"):
        with pytest.raises(typer.BadParameter, match="KEY=VALUE"):
            parse_meta([bad])
