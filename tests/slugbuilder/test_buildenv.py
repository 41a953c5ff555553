"""buildenv.py: what buildpacks see of the build task's environment, and ENV_DIR."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomadpaas.slugbuilder.buildenv import buildpack_env, write_env_dir
from nomadpaas.slugbuilder.models import BuildRequest


def _request(tmp_path: Path, **fields: str) -> BuildRequest:
    return BuildRequest(tmp_path / "src", tmp_path / "w", tmp_path / "c", tmp_path / "o", **fields)


def test_only_the_passthrough_variables_reach_buildpacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("NOMAD_META_slug_url", "https://presigned")
    monkeypatch.setenv("UV_INDEX_URL", "https://mirror")
    monkeypatch.setenv("npm_config_registry", "https://npm-mirror")
    monkeypatch.setenv("TZ", "UTC")
    home = tmp_path / "home"
    env = buildpack_env(_request(tmp_path, commit="abc", build_id="b-1"), str(home))
    assert home.is_dir()
    assert "AWS_SECRET_ACCESS_KEY" not in env and "NOMAD_META_slug_url" not in env
    assert env["UV_INDEX_URL"] == "https://mirror"
    assert env["npm_config_registry"] == "https://npm-mirror"
    assert env["TZ"] == "UTC"
    assert env["HOME"] == str(home) and env["STACK"] == "nomadpaas-1"
    assert env["SOURCE_VERSION"] == "abc" and env["REQUEST_ID"] == "b-1"


def test_path_and_lang_have_defaults_and_no_commit_means_no_source_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PATH")
    monkeypatch.delenv("LANG", raising=False)
    env = buildpack_env(_request(tmp_path, stack="other-1"), str(tmp_path / "home"))
    assert env["PATH"]  # os.defpath, maybe behind the venv's bin
    assert env["LANG"] == "C.UTF-8" and env["STACK"] == "other-1"
    assert "SOURCE_VERSION" not in env and "REQUEST_ID" not in env


def test_env_dir_gets_one_file_per_valid_config_var(tmp_path: Path) -> None:
    lines: list[str] = []
    warnings: list[str] = []
    config = {"SECRET": "s3cr3t\n", "_ok1": "", "BAD-NAME": "x", "1X": "y"}
    write_env_dir(str(tmp_path), config, lines.append, warnings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SECRET", "_ok1"]
    assert (tmp_path / "SECRET").read_text() == "s3cr3t\n"
    assert warnings == [
        "config var 'BAD-NAME' is not a valid name; not given to the build",
        "config var '1X' is not a valid name; not given to the build",
    ]
    assert lines == [f" !     Warning: {w}" for w in warnings]
