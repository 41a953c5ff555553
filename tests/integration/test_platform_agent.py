"""The library against the real embedded agent over HTTP: apps, config, releases, CAS races."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import nomad
import pytest
from testsupport import ServerProcess

from nomadpaas import Platform, Settings
from nomadpaas.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied


def settings_for(server: ServerProcess, home: Path, token: str | None = None) -> Settings:
    return Settings(nomad_addr=server.url, nomad_token=token, home=home)


@pytest.fixture
def platform(agent: ServerProcess, tmp_path: Path) -> Iterator[Platform]:
    with Platform(settings_for(agent, tmp_path / "home")) as platform:
        yield platform


def stored_paths(server: ServerProcess, prefix: str = "nomadpaas/") -> list[str]:
    response = httpx.get(f"{server.url}/v1/vars", params={"prefix": prefix}, timeout=30)
    response.raise_for_status()
    return sorted(row["Path"] for row in response.json())


def test_apps_create_list_info_destroy(platform: Platform, agent: ServerProcess) -> None:
    created = platform.create_app("demo")
    platform.create_app("other")
    assert [a.name for a in platform.list_apps()] == ["demo", "other"]
    assert platform.app_info("demo") == created
    platform.config_set("demo", {"A": "1"})
    assert "nomadpaas/apps/demo/releases/v1" in stored_paths(agent)
    platform.destroy_app("demo")
    assert stored_paths(agent) == ["nomadpaas/apps/other"]
    with pytest.raises(NotFound) as info:
        platform.app_info("demo")
    assert "nomadpaas apps create demo" in (info.value.hint or "")


def test_duplicate_and_invalid_names(platform: Platform, agent: ServerProcess) -> None:
    with pytest.raises(InvalidInput):
        platform.create_app("-bad")
    assert stored_paths(agent) == []
    platform.create_app("demo")
    with pytest.raises(AlreadyExists):
        platform.create_app("demo")


def test_config_and_releases_roundtrip(platform: Platform, agent: ServerProcess) -> None:
    platform.create_app("demo")
    v1 = platform.config_set("demo", {"A": "1", "B": "=x"})
    assert platform.config("demo").vars == {"A": "1", "B": "=x"}
    assert platform.config_get("demo", "B") == "=x"
    v2 = platform.config_unset("demo", ["A"])
    v3 = platform.config_unset("demo", ["B"])
    assert platform.config("demo").vars == {}
    assert [r.version for r in platform.releases("demo")] == [3, 2, 1]
    assert platform.release_info("demo", "v1") == v1
    assert platform.release_info("demo", 2).description == "Unset A config var"
    assert v2.config == {"B": "=x"}
    assert v3.config == {}
    with pytest.raises(NotFound):
        platform.release_info("demo", "v4")


def test_records_are_plain_nomad_variables_python_nomad_can_read(
    platform: Platform, agent: ServerProcess
) -> None:
    platform.create_app("demo")
    platform.config_set("demo", {"A": "1"})
    n = nomad.Nomad(address=agent.url, timeout=30)
    config = n.variable.get_variable("nomadpaas/apps/demo/config")
    assert config["Items"] == {"A": "1"}
    release = n.variable.get_variable("nomadpaas/apps/demo/releases/v1")
    assert json.loads(release["Items"]["config"]) == {"A": "1"}
    assert n.variable.get_variable("nomadpaas/apps/demo")["Items"]["latest_release"] == "1"


def test_size_limit_is_checked_before_writing(platform: Platform, agent: ServerProcess) -> None:
    platform.create_app("demo")
    before = stored_paths(agent)
    with pytest.raises(InvalidInput) as info:
        platform.config_set("demo", {"BIG": "x" * 70_000})
    assert "64 KiB" in info.value.message
    assert stored_paths(agent) == before


def test_racing_threads_get_distinct_release_numbers(agent: ServerProcess, tmp_path: Path) -> None:
    settings = settings_for(agent, tmp_path / "home")
    with Platform(settings) as platform:
        platform.create_app("demo")
    writers, per_writer = 6, 4
    versions: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers, timeout=60)

    def writer(n: int) -> None:
        try:
            with Platform(settings) as platform:
                barrier.wait()
                for i in range(per_writer):
                    versions.append(platform.config_set("demo", {f"T{n}_{i}": "1"}).version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert sorted(versions) == list(range(1, writers * per_writer + 1))
    with Platform(settings) as platform:
        current = platform.config("demo").vars
        assert len(current) == writers * per_writer
        stored = platform.releases("demo")
        assert sorted(r.version for r in stored) == sorted(versions)
        assert stored[0].config == current  # the newest release runs every change


_WRITER = """
import sys
from pathlib import Path
from nomadpaas import Platform, Settings
settings = Settings(nomad_addr=sys.argv[1], home=Path(sys.argv[2]))
with Platform(settings) as platform:
    for i in range(int(sys.argv[4])):
        print(platform.config_set("demo", {f"P{sys.argv[3]}_{i}": "1"}).version, flush=True)
"""


def test_racing_processes_get_distinct_release_numbers(
    agent: ServerProcess, tmp_path: Path
) -> None:
    settings = settings_for(agent, tmp_path / "home")
    with Platform(settings) as platform:
        platform.create_app("demo")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, agent.url, str(tmp_path / "home"), str(n), "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    versions: list[int] = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            versions.extend(int(line) for line in out.split())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert sorted(versions) == list(range(1, 17))


def test_acl_agent_needs_a_token(acl_agent: tuple[ServerProcess, str], tmp_path: Path) -> None:
    server, token = acl_agent
    anonymous = Platform(settings_for(server, tmp_path / "home"))
    with anonymous, pytest.raises(PermissionDenied):
        anonymous.create_app("demo")
    with Platform(settings_for(server, tmp_path / "home", token=token)) as platform:
        platform.create_app("demo")
        assert [a.name for a in platform.list_apps()] == ["demo"]


def test_settings_fall_back_to_the_embedded_stack_record(
    acl_agent: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    """`nomadpaas up && nomadpaas apps create x`: no NOMAD_ADDR/NOMAD_TOKEN, only stack.json."""
    server, token = acl_agent
    home = tmp_path / "home"
    home.mkdir()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    (home / "stack.json").write_text(
        json.dumps({"nomad_addr": server.url, "token_file": str(token_file)})
    )
    settings = Settings.from_env({"NOMADPAAS_HOME": str(home)})
    assert settings.embedded
    with Platform(settings) as platform:
        platform.create_app("demo")
        assert platform.app_info("demo").name == "demo"
