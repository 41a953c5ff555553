"""Issue 3's bad input against the running agent: each gets Nomad's answer (status and
text) and the agent keeps serving and running tasks; artifacts whose archive escapes the
destination (`../evil`, absolute symlinks) fail the task with `Failed Artifact Download`
and nothing is written outside the allocation directory."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nomad
import pytest
from agent.client.getter.archive_factory import Entry, file, make_tar, symlink
from agent.jobs_support import client, wait_eval
from agent.test_conformance_client import wait_for
from nomad.api.exceptions import BadRequestNomadException, BaseNomadException
from testsupport import ServerProcess

NS_PER_S = 10**9


def batch_job(job_id: str, driver: str = "raw_exec", **task: Any) -> dict[str, Any]:
    """A batch job running `/bin/true` once: no restarts, no rescheduling."""
    return {
        "ID": job_id,
        "Type": "batch",
        "TaskGroups": [
            {
                "Name": "run",
                "RestartPolicy": {"Attempts": 1, "Delay": NS_PER_S, "Mode": "fail"},
                "ReschedulePolicy": {"Attempts": 0, "Unlimited": False},
                "Tasks": [
                    {"Name": "main", "Driver": driver, "Config": {"command": "/bin/true"}, **task}
                ],
            }
        ],
    }


def finished(n: nomad.Nomad, job_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        done = [
            a for a in n.job.get_allocations(job_id) if a["ClientStatus"] in ("complete", "failed")
        ]
        return n.allocation.get_allocation(done[0]["ID"]) if done else None

    alloc: dict[str, Any] = wait_for(check, what=f"{job_id} finished")
    return alloc


def test_bad_input_gets_nomads_answer_and_the_agent_keeps_working(agent: ServerProcess) -> None:
    n = client(agent)
    jobs_url = f"{agent.url}/v1/jobs"
    # Malformed JSON (python-nomad always sends valid JSON, so httpx sends the bytes).
    for body, text in (
        (b'{"Job": {', "unexpected EOF"),
        (b'{"Job": nope}', "invalid character 'o' in literal null (expecting 'u')"),
        (b"{'Job': 1}", "invalid character '\\'' looking for beginning of object key string"),
        (
            b'{"Job": {"ID": "x",}}',
            "invalid character '}' looking for beginning of object key string",
        ),
        (b"{} x", "invalid character 'x' after top-level value"),
    ):
        r = httpx.post(jobs_url, content=body)
        assert (r.status_code, r.text) == (400, text), body
        assert r.headers["content-type"].startswith("text/plain")

    with pytest.raises(BadRequestNomadException) as bad:
        n.jobs.register_job({"Job": {"Name": "no-id", "TaskGroups": []}})
    assert bad.value.nomad_resp.text == "Job ID hasn't been provided"

    negative = batch_job("negative")
    negative["TaskGroups"][0]["Count"] = -1
    with pytest.raises(BaseNomadException) as err:
        n.jobs.register_job({"Job": negative})
    assert err.value.nomad_resp.status_code == 500
    assert err.value.nomad_resp.text == (
        "1 error occurred:\n\t* Task group run validation failed: 1 error occurred:\n"
        "\t* Task group count can't be negative\n\n\n\n"
    )

    # Unknown driver: a placement failure, not an error; the job waits (blocked eval).
    out = n.jobs.register_job({"Job": batch_job("nodriver", driver="no-such-driver")})
    evaluation = wait_eval(n, out["EvalID"])
    assert evaluation["Status"] == "complete"
    metric = evaluation["FailedTGAllocs"]["run"]
    assert metric["ConstraintFiltered"] == {"missing drivers": 1}
    assert metric["NodesEvaluated"] == 1 and metric["NodesFiltered"] == 1
    assert n.evaluation.get_evaluation(evaluation["BlockedEval"])["Status"] == "blocked"
    assert n.job.get_job("nodriver")["Status"] == "pending"

    # Dispatch without the required meta.
    parent = batch_job("report")
    parent["ParameterizedJob"] = {"MetaRequired": ["customer"]}
    n.job.register_job("report", {"Job": parent})
    with pytest.raises(BaseNomadException) as err:
        n.job.dispatch_job("report", meta={})
    assert err.value.nomad_resp.status_code == 500
    assert err.value.nomad_resp.text == "Dispatch did not provide required meta keys: [customer]"
    assert n.job.get_summary("report")["Children"] == {"Pending": 0, "Running": 0, "Dead": 0}

    # None of it hurt: the agent still runs work, and the failed inputs left nothing behind.
    assert agent.proc is not None and agent.proc.poll() is None
    n.jobs.register_job({"Job": batch_job("good")})
    assert finished(n, "good")["ClientStatus"] == "complete"
    ids = sorted(j["ID"] for j in n.jobs.get_jobs())
    assert ids == ["good", "nodriver", "report"]
    assert n.job.get_allocations("nodriver") == []


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local static file server (the artifact source); yields (its root, its base URL)."""
    root = tmp_path / "site"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def escape_cases(outside: Path) -> dict[str, tuple[list[Entry], str]]:
    """Archives that try to write `evil` outside the destination; the expected refusal."""
    return {
        "dotdot": ([file("ok.txt"), file("../evil", b"pwned")], '"../evil" escapes'),
        "deep-dotdot": (
            [file("../../../../../evil", b"pwned")],
            '"../../../../../evil" escapes',
        ),
        "absolute-symlink-dir": (
            [symlink("link", str(outside)), file("link/evil", b"pwned")],
            f'"link" is a symlink to an absolute path "{outside}"',
        ),
        "absolute-symlink": ([symlink("evil", str(outside / "evil"))], "absolute path"),
    }


@pytest.mark.parametrize(
    "case", ["dotdot", "deep-dotdot", "absolute-symlink-dir", "absolute-symlink"]
)
def test_escaping_artifact_fails_the_task_and_writes_nothing_outside(
    agent: ServerProcess, site: tuple[Path, str], tmp_path: Path, case: str
) -> None:
    root, base = site
    outside = tmp_path / "outside"
    outside.mkdir()
    entries, refusal = escape_cases(outside)[case]
    make_tar(root / "bundle.tar.gz", entries)
    n = client(agent)
    artifact = {"GetterSource": f"{base}/bundle.tar.gz"}
    n.jobs.register_job({"Job": batch_job("fetch", Artifacts=[artifact])})

    alloc = finished(n, "fetch")
    assert (alloc["ClientStatus"], alloc["ClientDescription"]) == ("failed", "Failed tasks")
    state = alloc["TaskStates"]["main"]
    types = [e["Type"] for e in state["Events"]]
    assert types == [
        "Received", "Task Setup", "Downloading Artifacts", "Failed Artifact Download",
        "Not Restarting",
    ]  # fmt: skip
    failure = state["Events"][3]
    assert refusal in failure["DownloadError"], failure
    assert failure["DisplayMessage"] == failure["DownloadError"]
    assert failure["Details"]["download_error"] == failure["DownloadError"]
    assert state["Events"][4]["DisplayMessage"] == "Error was unrecoverable"
    assert (state["State"], state["Failed"], state["Restarts"]) == ("dead", True, 0)

    # Nothing escaped: no `evil` anywhere under the test's directory (which holds the data
    # dir, and so the allocation directory too) nor beside the data dir; `outside` is empty.
    data_dir = agent.data_dir.resolve()
    planted = [p for p in tmp_path.rglob("*") if p.name in ("evil", "link")]
    assert planted == [], planted
    assert not (data_dir.parent / "evil").exists()
    assert list(outside.iterdir()) == []
    local = data_dir / "alloc" / alloc["ID"] / "main" / "local"
    assert not (local / "ok.txt").exists(), "a refused archive is not partly unpacked"
