"""stack.json round trip, privacy, the exported env, and doctor's exit-code rule."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nomadpaas.settings import Settings
from nomadpaas.stack import Check, DoctorReport, StackRecord, diagnose, load_record, shell_exports
from nomadpaas.stack.process import ProcessRecord
from nomadpaas.stack.record import port_of, save_record


def _record(home: Path) -> StackRecord:
    token = home / "acl-token"
    token.write_text("s3cr3t-token\n")
    return StackRecord(
        home=home,
        nomad_addr="http://127.0.0.1:4646",
        consul_addr="http://127.0.0.1:8500",
        s3_endpoint="http://127.0.0.1:4649",
        s3_bucket="nomadpaas",
        token_file=str(token),
        aws_access_key_id="nomadpaas",
        aws_secret_access_key="it's $ecret; `quoted`",
        processes={"agent": ProcessRecord(42, ("python", "-m", "x"), "l", 1.5, 7)},
    )


def test_record_round_trips_and_is_private(tmp_path: Path) -> None:
    record = _record(tmp_path)
    path = save_record(record)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_record(tmp_path) == record
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".stack.")] == []


def test_settings_fall_back_to_the_record(tmp_path: Path) -> None:
    save_record(_record(tmp_path))
    settings = Settings.from_env({"NOMADPAAS_HOME": str(tmp_path)})
    assert settings.embedded
    assert settings.nomad_token == "s3cr3t-token"
    assert settings.s3_endpoint == "http://127.0.0.1:4649"


def test_exports_survive_bash_eval_with_awkward_values(tmp_path: Path) -> None:
    env = _record(tmp_path).env()
    script = shell_exports(env) + 'printf "%s\\n" "$AWS_SECRET_ACCESS_KEY" "$NOMAD_TOKEN"'
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, timeout=30
    ).stdout.splitlines()
    assert out == ["it's $ecret; `quoted`", "s3cr3t-token"]
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"


def test_missing_or_garbled_record_is_none(tmp_path: Path) -> None:
    assert load_record(tmp_path) is None
    (tmp_path / "stack.json").write_text("[1, 2")
    assert load_record(tmp_path) is None


@pytest.mark.parametrize(
    ("url", "port"),
    [("http://127.0.0.1:4646", 4646), ("http://h", None), ("", None), ("http://h:x", None)],
)
def test_port_of(url: str, port: int | None) -> None:
    assert port_of(url) == port


def test_doctor_exit_code_rule() -> None:
    ok, info = Check("a", "ok", "fine"), Check("b", "info", "fyi")
    fail = Check("c", "fail", "bad token")
    unreachable = Check("d", "fail", "no answer", unreachable=True)
    assert DoctorReport((ok, info)).exit_code == 0
    assert DoctorReport((ok, fail)).exit_code == 1
    assert DoctorReport((fail, unreachable)).exit_code == 6


def test_doctor_with_nothing_running_says_cannot_reach(tmp_path: Path) -> None:
    # An empty home, Nomad and S3 at the discard port: nothing listens there.
    nowhere = "http://127.0.0.1:9"
    settings = Settings.from_env(
        {"NOMADPAAS_HOME": str(tmp_path), "NOMAD_ADDR": nowhere, "NOMADPAAS_S3_ENDPOINT": nowhere}
    )
    report = diagnose(settings, timeout=2.0)
    assert report.exit_code == 6
    nomad = next(c for c in report.checks if c.name == "nomad")
    assert nomad.status == "fail" and nomad.hint
    s3 = next(c for c in report.checks if c.name == "s3")
    assert s3.status == "fail" and s3.unreachable
