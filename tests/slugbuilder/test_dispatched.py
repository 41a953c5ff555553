"""The dispatched task's own conduct: timestamps, and the cache saved on idle CPU only."""

from __future__ import annotations

import json
import os
import re
import tarfile
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nomadpaas.slugbuilder import dispatched
from nomadpaas.slugbuilder.payload import PAYLOAD_FILE, payload_path
from nomadpaas.slugbuilder.task import FileTransfer


def test_now_is_iso_8601_utc_to_the_millisecond() -> None:
    before = datetime.now(UTC)
    stamp = dispatched._now()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", stamp)
    parsed = datetime.fromisoformat(stamp)
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= parsed <= after


class _PolicyRecorder(FileTransfer):
    """Notes the calling thread's scheduling policy at every upload."""

    def __init__(self) -> None:
        self.stores: list[tuple[str, int]] = []

    def store(self, path: Path, url: str) -> str | None:
        kind = url.rsplit("/", 2)[-2]  # slugs, builds or cache
        self.stores.append((kind, os.sched_getscheduler(0)))
        return super().store(path, url)


@pytest.fixture
def meta(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    bin_dir = tmp_path / "bps" / "counter" / "bin"
    bin_dir.mkdir(parents=True)
    scripts = {
        "detect": "echo Counter",
        "compile": 'mkdir -p "$2/deps"; date +%s%N > "$2/deps/stamp"',
        "release": "printf 'default_process_types:\\n  web: echo hi\\n'",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\nset -eu\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("NOMADPAAS_BUILDPACKS_DIR", str(tmp_path / "bps"))
    bucket = tmp_path / "bucket"
    (bucket / "sources").mkdir(parents=True)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "hello.txt").write_text("hi")
    with tarfile.open(bucket / "sources" / "app.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src", arcname=".")
    (bucket / "config").mkdir()
    (bucket / "config" / "app.json").write_text(json.dumps({"BUILDPACK_URL": "counter"}))
    return {
        "app": "app",
        "build_id": "b1",
        "source_url": (bucket / "sources" / "app.tar.gz").as_uri(),
        "slug_url": (bucket / "slugs" / "app.tar.gz").as_uri(),
        "metadata_url": (bucket / "builds" / "b1.json").as_uri(),
        "cache_url": (bucket / "cache" / "app.tar.gz").as_uri(),
        "cache_put_url": (bucket / "cache" / "app.tar.gz").as_uri(),
        "config_url": (bucket / "config" / "app.json").as_uri(),
    }


def _run_in_thread(
    meta: dict[str, str], work: Path, idle: bool
) -> tuple[int, _PolicyRecorder, int]:
    """Run the task on its own thread (its scheduling policy is per thread: a failed
    restore must not leave pytest's thread on idle CPU)."""
    transfer = _PolicyRecorder()
    out: dict[str, int] = {}
    work.mkdir()

    def body() -> None:
        code, _record = dispatched.run(meta, transfer, work, idle_after_result=idle)
        out["code"], out["after"] = code, os.sched_getscheduler(0)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive()
    return out["code"], transfer, out["after"]


def test_the_cache_is_saved_on_idle_cpu_once_the_result_is_stored(
    meta: dict[str, str], tmp_path: Path
) -> None:
    code, transfer, after = _run_in_thread(meta, tmp_path / "w1", idle=True)
    assert code == 0
    normal, idle = os.SCHED_OTHER, os.SCHED_IDLE
    assert transfer.stores == [
        ("slugs", normal),
        ("builds", normal),  # the result: at full speed
        ("cache", idle),  # only the next build needs it
        ("builds", normal),  # the final timings, after the policy came back
    ]
    assert after == normal
    record = json.loads(Path(meta["metadata_url"].removeprefix("file://")).read_text())
    assert record["status"] == "succeeded"
    assert "pack_cache" in record["timings"]


def test_without_the_flag_nothing_runs_on_idle_cpu(meta: dict[str, str], tmp_path: Path) -> None:
    code, transfer, after = _run_in_thread(meta, tmp_path / "w1", idle=False)
    assert code == 0
    assert {policy for _kind, policy in transfer.stores} == {os.SCHED_OTHER}
    assert after == os.SCHED_OTHER


def _run_capturing(
    meta: dict[str, str], work: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str], dict[str, object]]:
    work.mkdir()
    code, _record = dispatched.run(meta, FileTransfer(), work)
    stored = json.loads(Path(meta["metadata_url"].removeprefix("file://")).read_text())
    return code, capsys.readouterr().out.splitlines(), stored


def test_a_success_prints_its_result_line_with_the_token_before_its_done_line(
    meta: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta["result_token"] = "f00d" * 8
    code, lines, record = _run_capturing(meta, tmp_path / "w1", capsys)
    assert code == 0
    done = lines.index(dispatched.DONE_LINES["succeeded"])
    prefix = f"{dispatched.RESULT_PREFIX}{'f00d' * 8} "
    assert lines[done - 1].startswith(prefix)  # in hand when the platform sees DONE
    result = json.loads(lines[done - 1].removeprefix(prefix))
    slug = record["slug"]
    assert isinstance(slug, dict)
    assert result["slug"] == {k: slug[k] for k in dispatched.RESULT_SLUG_FIELDS}
    assert result["slug"]["md5"] and result["slug"]["process_types"] == {"web": "echo hi"}
    for key in dispatched.RESULT_FIELDS:
        assert result[key] == record[key]
    # The stored tail is the user's output: no token in it, nor in the stored record.
    assert not any(dispatched.RESULT_PREFIX in line for line in record["log_tail"])  # type: ignore[attr-defined]
    assert "f00d" * 8 not in json.dumps(record)


class _RecordStoreFails(FileTransfer):
    """Fails the build record's first store (a passing network fault), stores the rest."""

    def __init__(self, record_url: str) -> None:
        self.record_url = record_url
        self.failed = False

    def store(self, path: Path, url: str) -> str | None:
        if url == self.record_url and not self.failed:
            self.failed = True
            raise OSError("Connection reset by peer")
        return super().store(path, url)


def test_a_record_store_failing_after_the_result_line_ends_in_the_failed_line(
    meta: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The result line goes out before the record's store (the platform promotes the
    # slug meanwhile); only the DONE line after the store says the build succeeded.
    meta["result_token"] = "f00d" * 8
    work = tmp_path / "w1"
    work.mkdir()
    code, record = dispatched.run(meta, _RecordStoreFails(meta["metadata_url"]), work)
    lines = capsys.readouterr().out.splitlines()
    assert code == 3 and record["status"] == "failed"
    stored = json.loads(Path(meta["metadata_url"].removeprefix("file://")).read_text())
    assert stored["status"] == "failed"
    results = [i for i, line in enumerate(lines) if line.startswith(dispatched.RESULT_PREFIX)]
    assert len(results) == 1
    assert lines.index(dispatched.DONE_LINES["failed"]) > results[0]
    assert dispatched.DONE_LINES["succeeded"] not in lines


def test_no_result_line_without_a_token_or_on_failure(
    meta: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, _record = _run_capturing(meta, tmp_path / "w1", capsys)
    assert code == 0 and dispatched.DONE_LINES["succeeded"] in lines
    assert not any(line.startswith(dispatched.RESULT_PREFIX) for line in lines)
    meta["result_token"] = "f00d" * 8
    meta["source_url"] = (tmp_path / "bucket" / "sources" / "missing.tar.gz").as_uri()
    code, lines, _record = _run_capturing(meta, tmp_path / "w2", capsys)
    assert code == 3 and dispatched.DONE_LINES["failed"] in lines
    assert not any(line.startswith(dispatched.RESULT_PREFIX) for line in lines)


def test_the_token_reaches_the_task_from_the_dispatch_meta() -> None:
    env = {"NOMAD_META_app": "a", "NOMAD_META_result_token": "t0k"}
    assert dispatched.read_meta(env)["result_token"] == "t0k"


def test_buildpacks_never_see_the_token(
    meta: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOMAD_META_result_token", "f00d" * 8)  # as Nomad sets it
    meta["result_token"] = "f00d" * 8
    compile_script = tmp_path / "bps" / "counter" / "bin" / "compile"
    compile_script.write_text(
        '#!/usr/bin/env bash\necho "seen: ${NOMAD_META_result_token:-nothing}"\n'
    )
    code, lines, _record = _run_capturing(meta, tmp_path / "w1", capsys)
    assert code == 0
    assert any(line.endswith("seen: nothing") for line in lines), lines


def _payload(meta: dict[str, str], tmp_path: Path) -> tuple[Path, str]:
    """The source as Nomad writes a dispatch payload (local/source.tar.gz), its sha256;
    the bucket's copy is removed: a build that still fetched `source_url` would fail."""
    import hashlib

    bucket_copy = Path(meta["source_url"].removeprefix("file://"))
    local = tmp_path / "local"
    local.mkdir()
    payload = local / PAYLOAD_FILE
    payload.write_bytes(bucket_copy.read_bytes())
    bucket_copy.unlink()
    return payload, hashlib.sha256(payload.read_bytes()).hexdigest()


def test_the_dispatch_payload_is_built_from_instead_of_the_source_url(
    meta: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload, digest = _payload(meta, tmp_path)
    (tmp_path / "work").mkdir()
    code, record = dispatched.run(
        {**meta, "source_sha256": digest}, FileTransfer(), tmp_path / "work",
        source_file=str(payload),
    )  # fmt: skip
    assert code == 0, capsys.readouterr().out
    assert record["status"] == "succeeded" and record["slug"]["process_types"] == {"web": "echo hi"}
    # Without the payload, the same meta fetches source_url, which is gone: it fails.
    (tmp_path / "work2").mkdir()
    code, record = dispatched.run(meta, FileTransfer(), tmp_path / "work2")
    assert code == 3 and "does not exist" in record["error"]["message"]


@pytest.mark.parametrize("sent", ["0" * 64, None])
def test_a_payload_whose_sha256_is_not_the_meta_s_fails_the_build(
    meta: dict[str, str], tmp_path: Path, sent: str | None
) -> None:
    payload, _digest = _payload(meta, tmp_path)
    (tmp_path / "work").mkdir()
    given = dict(meta) if sent is None else {**meta, "source_sha256": sent}
    code, record = dispatched.run(
        given, FileTransfer(), tmp_path / "work", source_file=str(payload)
    )
    assert code == 3 and record["status"] == "failed" and record["slug"] is None
    message = record["error"]["message"]
    assert "dispatch payload" in message and "source_sha256" in message
    assert "not built" in message
    assert not (Path(meta["slug_url"].removeprefix("file://"))).exists()


def test_the_task_finds_the_payload_in_its_task_dir(tmp_path: Path) -> None:
    assert payload_path({}) is None
    assert payload_path({"NOMAD_TASK_DIR": str(tmp_path)}) is None  # no payload: no file
    (tmp_path / PAYLOAD_FILE).write_bytes(b"x")
    assert payload_path({"NOMAD_TASK_DIR": str(tmp_path)}) == str(tmp_path / PAYLOAD_FILE)
    assert "source_sha256" in dispatched.read_meta({"NOMAD_META_source_sha256": "ab"})
