"""taskenv: NOMAD_* variables as Nomad builds them for raw_exec, interpolation, dynamic ports."""

from __future__ import annotations

import random
import socket
from typing import Any

import pytest

from nomadpaas.agent.client.taskenv import (
    DEFAULT_ENV_DENYLIST,
    PortSelectionError,
    build_task_env,
    clean_env_var,
    interpolate,
    interpolate_args,
    nomad_variables,
    pick_dynamic_ports,
)

ROOT = "/data/alloc/0f6c9b3e-1111-2222-3333-444455556666"
NODE: dict[str, Any] = {
    "ID": "node-uuid-1",
    "Name": "laptop",
    "Datacenter": "dc1",
    "NodeClass": "dev",
    "Attributes": {"nomad.region": "global", "kernel.name": "linux"},
    "Meta": {"rack": "r1"},
}


def _alloc(parent: str = "") -> dict[str, Any]:
    return {
        "ID": "0f6c9b3e-1111-2222-3333-444455556666",
        "Name": "shop.web[2]",
        "Namespace": "default",
        "TaskGroup": "web",
        "JobID": "shop",
        "Job": {
            "ID": "shop",
            "Name": "shop",
            "ParentID": parent,
            "Region": "global",
            "Meta": {"nomadpaas.app": "shop", "tier": "job"},
            "TaskGroups": [{"Name": "web", "Meta": {"tier": "group", "g": "1"}}],
        },
    }


TASK: dict[str, Any] = {
    "Name": "web",
    "Env": {
        "PORT": "${NOMAD_PORT_http}",
        "WHERE": "${node.unique.id}/${node.datacenter}/${attr.kernel.name}/${meta.rack}",
        "APP": "${NOMAD_META_nomadpaas.app}",
        "KEEP": "${not.a.thing} and $HOME",
    },
    "Meta": {"tier": "task"},
    "Resources": {"CPU": 500, "MemoryMB": 256, "MemoryMaxMB": 512},
}
PORTS = [
    {"Label": "http", "Value": 23456, "To": 0, "HostIP": "127.0.0.1"},
    {"Label": "admin-ui", "Value": 23457, "To": 8080, "HostIP": "127.0.0.1"},
]


def test_nomad_variables_for_raw_exec() -> None:
    env = nomad_variables(_alloc(), TASK, NODE, PORTS, ROOT)
    assert env["NOMAD_ALLOC_ID"] == "0f6c9b3e-1111-2222-3333-444455556666"
    assert env["NOMAD_SHORT_ALLOC_ID"] == "0f6c9b3e"
    assert env["NOMAD_ALLOC_NAME"] == "shop.web[2]"
    assert env["NOMAD_ALLOC_INDEX"] == "2"
    assert env["NOMAD_JOB_ID"] == env["NOMAD_JOB_NAME"] == "shop"
    assert env["NOMAD_GROUP_NAME"] == "web"
    assert env["NOMAD_TASK_NAME"] == "web"
    assert (env["NOMAD_DC"], env["NOMAD_REGION"], env["NOMAD_NAMESPACE"]) == (
        "dc1",
        "global",
        "default",
    )
    assert env["NOMAD_CPU_LIMIT"] == "500"
    assert env["NOMAD_MEMORY_LIMIT"] == "256"
    assert env["NOMAD_MEMORY_MAX_LIMIT"] == "512"
    assert "NOMAD_CPU_CORES" not in env
    assert env["NOMAD_ALLOC_DIR"] == f"{ROOT}/alloc"
    assert env["NOMAD_TASK_DIR"] == f"{ROOT}/web/local"
    assert env["NOMAD_SECRETS_DIR"] == f"{ROOT}/web/secrets"
    assert "NOMAD_JOB_PARENT_ID" not in env


def test_parent_id_only_when_there_is_a_parent() -> None:
    env = nomad_variables(_alloc(parent="shop-run"), TASK, NODE, [], ROOT)
    assert env["NOMAD_JOB_PARENT_ID"] == "shop-run"


def test_port_variables_with_and_without_to_and_cleaned_labels() -> None:
    env = nomad_variables(_alloc(), TASK, NODE, PORTS, ROOT)
    assert env["NOMAD_IP_http"] == env["NOMAD_HOST_IP_http"] == "127.0.0.1"
    assert env["NOMAD_PORT_http"] == env["NOMAD_ALLOC_PORT_http"] == "23456"
    assert env["NOMAD_HOST_PORT_http"] == "23456"
    assert env["NOMAD_ADDR_http"] == env["NOMAD_HOST_ADDR_http"] == "127.0.0.1:23456"
    # `-` is not valid in a variable name; To > 0 changes NOMAD_PORT_ but not the host port.
    assert env["NOMAD_PORT_admin_ui"] == env["NOMAD_ALLOC_PORT_admin_ui"] == "8080"
    assert env["NOMAD_HOST_PORT_admin_ui"] == "23457"
    assert env["NOMAD_ADDR_admin_ui"] == "127.0.0.1:23457"
    assert not any("-" in k for k in env)


def test_ipv6_addresses_are_bracketed() -> None:
    env = nomad_variables(_alloc(), TASK, NODE, [{"Label": "h", "Value": 1, "HostIP": "::1"}], ROOT)
    assert env["NOMAD_ADDR_h"] == "[::1]:1"


def test_meta_is_merged_and_exported_as_written_and_upper_cased() -> None:
    env = nomad_variables(_alloc(), TASK, NODE, [], ROOT)
    assert env["NOMAD_META_tier"] == env["NOMAD_META_TIER"] == "task"  # task wins
    assert env["NOMAD_META_g"] == env["NOMAD_META_G"] == "1"
    assert env["NOMAD_META_nomadpaas.app"] == env["NOMAD_META_NOMADPAAS.APP"] == "shop"


def test_clean_env_var_matches_nomad() -> None:
    assert clean_env_var("NOMAD_META_a-b c.d") == "NOMAD_META_a_b_c.d"
    assert clean_env_var("1abc") == "_abc"
    assert clean_env_var("é") == "_"


def test_build_task_env_interpolates_env_values_and_filters_the_host_env() -> None:
    host = {"HOME": "/home/u", "PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "s", "VAULT_TOKEN": "t"}
    env = build_task_env(_alloc(), TASK, NODE, PORTS, ROOT, host_env=host)
    assert env["PORT"] == "23456"
    assert env["WHERE"] == "node-uuid-1/dc1/linux/r1"
    assert env["APP"] == "shop"
    assert env["KEEP"] == "${not.a.thing} and $HOME"  # unknown names and bare $VAR stay
    assert env["HOME"] == "/home/u" and env["PATH"] == "/bin"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "VAULT_TOKEN" not in env
    assert "AWS_ACCESS_KEY_ID" in DEFAULT_ENV_DENYLIST


def test_task_env_overrides_host_and_nomad_values() -> None:
    task = dict(TASK, Env={"PATH": "/opt/bin", "NOMAD_DC": "mine"})
    env = build_task_env(_alloc(), task, NODE, [], ROOT, host_env={"PATH": "/bin"})
    assert env["PATH"] == "/opt/bin"
    assert env["NOMAD_DC"] == "mine"


def test_interpolate_args_and_node_names() -> None:
    env = build_task_env(_alloc(), TASK, NODE, PORTS, ROOT)
    args = interpolate_args(
        ["-m", "http.server", "${NOMAD_PORT_http}", "${node.unique.name}", "${ node.class }"],
        env,
        NODE,
    )
    assert args == ["-m", "http.server", "23456", "laptop", "dev"]
    assert interpolate("${NOMAD_ALLOC_INDEX}-${x}", env, {}) == "2-${x}"


def test_pick_dynamic_ports_returns_distinct_free_ports_in_range() -> None:
    ports = pick_dynamic_ports(5, rng=random.Random(7))
    assert len(set(ports)) == 5
    assert all(20000 <= p <= 32000 for p in ports)
    for p in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def _busy_port_with_free_neighbour() -> tuple[socket.socket, int]:
    """A listening socket on port p such that p + 1 is free (other processes on this
    machine hold ports too: a neighbour in use is retried, boundedly)."""
    for _ in range(50):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", taken + 1))
            except OSError:
                busy.close()
                continue
        return busy, taken
    raise AssertionError("no port with a free neighbour in 50 tries")


def test_pick_dynamic_ports_skips_ports_in_use_and_excluded() -> None:
    busy, taken = _busy_port_with_free_neighbour()
    with busy:
        assert pick_dynamic_ports(1, low=taken, high=taken + 1) == [taken + 1]
        with pytest.raises(PortSelectionError):
            pick_dynamic_ports(1, low=taken, high=taken + 1, exclude=[taken + 1])


def test_pick_dynamic_ports_fails_when_range_is_exhausted() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        with pytest.raises(PortSelectionError, match="dynamic port selection failed"):
            pick_dynamic_ports(1, low=taken, high=taken)
