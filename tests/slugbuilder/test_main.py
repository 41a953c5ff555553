"""`python -m nomadpaas.slugbuilder`: the build task's command line, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nomadpaas.slugbuilder", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_success_writes_slug_and_metadata(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"GREETING": "hi"}))
    out = tmp_path / "out"
    done = _run(
        "--source", str(EXAMPLES / "shell-worker"), "--cache-dir", str(tmp_path / "c"),
        "--output-dir", str(out), "--config-json", str(config), "--commit", "abc123",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == "-----> Procfile app detected"
    meta = json.loads((out / "slug.json").read_text())
    assert meta["commit"] == "abc123" and (out / "slug.tar.gz").is_file()


def test_failure_exits_3_and_says_why(tmp_path: Path) -> None:
    done = _run(
        "--source", str(EXAMPLES / "fail-bad-procfile"), "--cache-dir", str(tmp_path / "c"),
        "--output-dir", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 3
    assert " !     Build failed: Procfile is invalid: line 2:" in done.stdout


def test_bad_config_json_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "c.json"
    bad.write_text("[1, 2]")
    done = _run(
        "--source", str(EXAMPLES / "shell-worker"), "--cache-dir", str(tmp_path / "c"),
        "--output-dir", str(tmp_path / "o"), "--config-json", str(bad),
    )  # fmt: skip
    assert done.returncode == 2 and "JSON object" in done.stdout


def test_the_task_entry_collects_garbage_again_once_it_has_started() -> None:
    # `task` turns the collector off while it imports the pipeline (its start's speed),
    # never for the build itself (a 15-minute build must not hoard cycles); what it
    # loaded is frozen out of later collections.
    code = (
        "import gc; from nomadpaas.slugbuilder.__main__ import main; "
        "code = main(['task']); print(gc.isenabled(), gc.get_freeze_count() > 0, code)"
    )
    env = {"PATH": "/usr/bin:/bin"}  # no NOMAD_META_*: it stops after the imports
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
        check=False,
    )  # fmt: skip
    assert done.stdout.splitlines()[-1] == "True True 2", done.stdout + done.stderr
    assert "Missing dispatch meta" in done.stdout
