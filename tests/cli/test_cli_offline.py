"""The apps/config/releases commands with CliRunner over a fake Nomad (no server)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner
from unit.fakenomad import FakeNomad

import nomadpaas.nomad.client as nomad_client
from nomadpaas.cli import app
from nomadpaas.cli.output import set_global_json
from nomadpaas.errors import AlreadyExists, InvalidInput, NotFound


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeNomad:
    """Every Platform the commands build talks to this fake."""
    fake = FakeNomad()
    monkeypatch.setattr(
        nomad_client,
        "NomadClient",
        functools.partial(nomad_client.NomadClient, transport=httpx.MockTransport(fake.handle)),
    )
    monkeypatch.setenv("NOMAD_ADDR", "http://nomad.test:4646")
    monkeypatch.setenv("NOMADPAAS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NOMADPAAS_APP", raising=False)
    return fake


@pytest.fixture(autouse=True)
def _reset_global_json() -> None:
    set_global_json(False)


runner = CliRunner()


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, BaseException | None]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.exception


def test_done_when_line(fake: FakeNomad) -> None:
    assert cli("apps", "create", "demo")[0] == 0
    code, out, _ = cli("config", "set", "-a", "demo", "A=1", "B==x")
    assert code == 0, out
    code, out, _ = cli("config", "-a", "demo", "--json")
    assert code == 0
    assert json.loads(out) == {"A": "1", "B": "=x"}
    code, out, _ = cli("releases", "-a", "demo")
    assert code == 0
    assert "v1" in out
    assert "Set A, B config vars" in out


def test_config_forms_agree(fake: FakeNomad) -> None:
    cli("apps", "create", "demo")
    cli("config", "set", "-a", "demo", "A=1")
    bare = cli("config", "-a", "demo", "--json")[1]
    assert bare == cli("config", "list", "-a", "demo", "--json")[1]
    assert bare == cli("config", "-a", "demo", "list", "--json")[1]
    assert bare == cli("--json", "config", "-a", "demo")[1]
    assert bare == cli("config", "list", "--json", env={"NOMADPAAS_APP": "demo"})[1]
    assert cli("config", "-a", "demo", "get", "A")[1] == "1\n"
    assert json.loads(cli("config", "get", "A", "-a", "demo", "--json")[1]) == {"A": "1"}
    text = cli("config", "-a", "demo")[1]
    assert "=== demo Config Vars" in text
    assert "A: 1" in text


def test_config_set_from_file_and_unset(fake: FakeNomad, tmp_path: Path) -> None:
    cli("apps", "create", "demo")
    env_file = tmp_path / "app.env"
    env_file.write_text('# settings\nexport DB="postgres://x"\nA=from-file\n')
    code, out, exc = cli("config", "set", "-a", "demo", "--from-file", str(env_file), "A=cli")
    assert code == 0, exc
    assert json.loads(cli("config", "-a", "demo", "--json")[1]) == {
        "A": "cli",
        "DB": "postgres://x",
    }
    code, out, _ = cli("config", "unset", "-a", "demo", "A", "--json")
    assert json.loads(out)["description"] == "Unset A config var"
    releases = json.loads(cli("releases", "list", "-a", "demo", "--json")[1])
    assert [r["name"] for r in releases] == ["v2", "v1"]
    info = json.loads(cli("releases", "info", "v1", "-a", "demo", "--json")[1])
    assert info["config"] == {"A": "cli", "DB": "postgres://x"}
    assert json.loads(cli("releases", "-a", "demo", "info", "2", "--json")[1])["version"] == 2
    assert "=== Release v2" in cli("releases", "info", "-a", "demo")[1]


def test_bad_dotenv_reports_the_line_and_writes_nothing(fake: FakeNomad, tmp_path: Path) -> None:
    cli("apps", "create", "demo")
    before = list(fake.writes())
    env_file = tmp_path / "bad.env"
    env_file.write_text("A=1\nB='open\n")
    _, _, exc = cli("config", "set", "-a", "demo", "--from-file", str(env_file))
    assert isinstance(exc, InvalidInput)
    assert f"{env_file}:2:" in exc.message
    _, _, exc = cli("config", "set", "-a", "demo", "--from-file", str(tmp_path / "missing.env"))
    assert isinstance(exc, InvalidInput)
    _, _, exc = cli("config", "set", "-a", "demo", "A=1", "nonsense")
    assert isinstance(exc, InvalidInput)
    assert fake.writes() == before


def test_missing_app_flag_is_a_usage_error(fake: FakeNomad) -> None:
    for args in (
        ("config",),
        ("config", "list"),
        ("releases",),
        ("apps", "info"),
        ("config", "get", "A"),
    ):
        _, _, exc = cli(*args)
        assert isinstance(exc, InvalidInput), args
        assert exc.exit_code == 2
        assert "NOMADPAAS_APP" in (exc.hint or "")
    assert fake.requests == []


def test_apps_lifecycle_and_errors(fake: FakeNomad) -> None:
    assert "No apps yet" in cli("apps")[1]
    _, out, _ = cli("apps", "create", "demo", "--json")
    assert json.loads(out)["name"] == "demo"
    assert isinstance(cli("apps", "create", "demo")[2], AlreadyExists)
    assert isinstance(cli("apps", "create", "Demo!")[2], InvalidInput)
    assert [a["name"] for a in json.loads(cli("apps", "list", "--json")[1])] == ["demo"]
    assert "demo" in cli("apps")[1]
    assert "Web URL" in cli("apps", "info", "-a", "demo")[1]
    _, _, exc = cli("apps", "destroy", "-a", "demo")
    assert isinstance(exc, InvalidInput)
    _, _, exc = cli("apps", "destroy", "-a", "demo", "--confirm", "other")
    assert isinstance(exc, InvalidInput)
    assert cli("apps", "destroy", "-a", "demo", "--confirm", "demo")[0] == 0
    assert isinstance(cli("apps", "info", "-a", "demo")[2], NotFound)
    cli("apps", "create", "demo")
    assert json.loads(cli("apps", "destroy", "-a", "demo", "--yes", "--json")[1]) == {
        "destroyed": "demo"
    }
    assert json.loads(cli("apps", "--json")[1]) == []


def test_missing_app_hint(fake: FakeNomad) -> None:
    _, _, exc = cli("config", "set", "-a", "ghost", "A=1")
    assert isinstance(exc, NotFound)
    assert "nomadpaas apps create ghost" in (exc.hint or "")


def test_down_with_no_stack_names_the_home_it_looked_in(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`make demo` keeps its stack in the checkout; a bare `down` elsewhere must say where
    it looked and how to reach the other one, not just "nothing to stop"."""
    home = tmp_path / "elsewhere"
    monkeypatch.setenv("NOMADPAAS_HOME", str(home))
    result = runner.invoke(app, ["down"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert f"not running in {home}" in text and "NOMADPAAS_HOME" in text
    result = runner.invoke(app, ["down", "--json"])
    assert json.loads(result.output) == {"stopped": [], "not_running": []}
