"""The Jobs API through python-nomad against the real agent: register → eval →
allocations, updates, scale, revert, stop and purge, EnforceIndex, bad input, version
retention. The agent's client runs the tasks meanwhile; these tests check only the
server's side (placement, desired state), never task outcomes."""

from __future__ import annotations

import httpx
import pytest
from agent.jobs_support import (
    NO_DEPLOYMENTS,
    client,
    live_allocs,
    raw_exec_job,
    register,
    wait_eval,
)
from nomad.api.exceptions import BadRequestNomadException, BaseNomadException
from testsupport import ServerProcess


def test_register_service_job_places_named_allocs_with_ports(agent: ServerProcess) -> None:
    n = client(agent)
    out = register(n, raw_exec_job(count=3))
    assert out["JobModifyIndex"] > 0 and out["EvalCreateIndex"] > 0
    evaluation = n.evaluation.get_evaluation(out["EvalID"])
    assert (evaluation["TriggeredBy"], evaluation["Type"]) == ("job-register", "service")
    allocs = live_allocs(n, "web")
    assert [a["Name"] for a in allocs] == ["web.app[0]", "web.app[1]", "web.app[2]"]
    assert {a["ClientStatus"] for a in allocs} <= {"pending", "running"}
    full = n.allocation.get_allocation(allocs[0]["ID"])
    assert full["Job"]["ID"] == "web"
    (port,) = full["AllocatedResources"]["Shared"]["Ports"]
    assert port["Label"] == "http" and 20000 <= port["Value"] <= 32000
    job = n.job.get_job("web")
    assert (job["Version"], job["Status"], job["Stable"]) == (0, "running", False)
    assert job["SubmitTime"] > 0
    summary = n.job.get_summary("web")
    counts = summary["Summary"]["app"]
    assert counts["Starting"] + counts["Running"] == 3
    assert [e["ID"] for e in n.job.get_evaluations("web")] == [out["EvalID"]]
    assert n.job.get_deployment("web")["TaskGroups"]["app"]["DesiredTotal"] == 3


def test_destructive_update_replaces_every_alloc(agent: ServerProcess) -> None:
    n = client(agent)
    register(n, raw_exec_job(update=NO_DEPLOYMENTS))
    before = {a["ID"] for a in live_allocs(n, "web")}
    out = register(n, raw_exec_job(args=["301"], update=NO_DEPLOYMENTS))
    assert n.job.get_job("web")["Version"] == 1
    allocs = n.job.get_allocations("web")
    stopped = [a for a in allocs if a["ID"] in before]
    assert {a["DesiredStatus"] for a in stopped} == {"stop"}
    assert {a["DesiredDescription"] for a in stopped} == {
        "alloc is being updated due to job update"
    }
    new = live_allocs(n, "web")
    assert [a["Name"] for a in new] == ["web.app[0]", "web.app[1]"]
    assert {a["JobVersion"] for a in new} == {1}
    assert {a["EvalID"] for a in new} == {out["EvalID"]}
    full = n.allocation.get_allocation(new[0]["ID"])
    assert full["PreviousAllocation"] in before


def test_in_place_update_keeps_allocs(agent: ServerProcess) -> None:
    n = client(agent)
    register(n, raw_exec_job(update=NO_DEPLOYMENTS))
    before = [a["ID"] for a in live_allocs(n, "web")]
    register(n, raw_exec_job(update={"MaxParallel": 0, "MinHealthyTime": 20 * 10**9}))
    assert n.job.get_job("web")["Version"] == 1
    after = live_allocs(n, "web")
    assert [a["ID"] for a in after] == before
    assert {a["JobVersion"] for a in after} == {1}


def test_scale_up_and_down_and_status(agent: ServerProcess) -> None:
    n = client(agent)
    register(n, raw_exec_job(count=1, update=NO_DEPLOYMENTS))
    for count in (3, 1):
        r = n.job.request(
            "web", "scale", method="post",
            json={"Count": count, "Target": {"Group": "app"}, "Message": f"to {count}"},
        )  # fmt: skip
        body = r.json()
        assert wait_eval(n, body["EvalID"])["TriggeredBy"] == "job-scaling"
        assert len(live_allocs(n, "web")) == count
    status = n.job.request("web", "scale", method="get").json()
    group = status["TaskGroups"]["app"]
    assert (group["Desired"], group["Placed"], status["JobStopped"]) == (1, 1, False)
    assert [(e["Count"], e["PreviousCount"]) for e in group["Events"]] == [(1, 3), (3, 1)]
    assert status["JobModifyIndex"] == n.job.get_job("web")["ModifyIndex"]


def test_scale_errors(agent: ServerProcess) -> None:
    n = client(agent)
    register(n, raw_exec_job(count=1))  # default update block: a deployment starts
    url = f"{agent.url}/v1/job/web/scale"
    cases = [
        ({"Count": 2, "Target": {"Group": "app"}}, 400,
         "job scaling blocked due to active deployment"),
        ({"Count": 2, "Target": {}}, 400, "missing task group name for scaling action"),
        ({"Count": -1, "Target": {"Group": "app"}}, 400, "scaling action count can't be negative"),
        ({"Count": 1, "Error": True, "Target": {"Group": "app"}}, 400,
         "scaling action should not contain count if error is true"),
        ({"Count": 1, "Target": {"Group": "nope"}}, 400,
         'task group "nope" specified for scaling does not exist in job'),
        ({"Count": 1, "Target": {"Group": "app", "Job": "other"}}, 400,
         "job ID in payload did not match URL"),
    ]  # fmt: skip
    for body, code, text in cases:
        r = httpx.post(url, json=body)
        assert (r.status_code, r.text) == (code, text), body
    r = httpx.post(f"{agent.url}/v1/job/ghost/scale", json={"Count": 1, "Target": {"Group": "a"}})
    assert (r.status_code, r.text) == (404, 'job "ghost" not found')
    r = httpx.post(url, json={"Message": "just noting", "Target": {"Group": "app"}})
    assert r.status_code == 200 and r.json()["EvalID"] == ""


def test_revert_with_enforce_prior_version(agent: ServerProcess) -> None:
    n = client(agent)
    register(n, raw_exec_job(update=NO_DEPLOYMENTS))
    register(n, raw_exec_job(args=["301"], update=NO_DEPLOYMENTS))
    with pytest.raises(BaseNomadException) as exc:
        n.job.revert_job("web", 0, enforce_prior_version=0)
    assert exc.value.nomad_resp.text == "Current job has version 1; enforcing version 0"
    with pytest.raises(BaseNomadException) as exc:
        n.job.revert_job("web", 1)
    assert exc.value.nomad_resp.text == "can't revert to current version"
    with pytest.raises(BaseNomadException) as exc:
        n.job.revert_job("web", 7)
    assert exc.value.nomad_resp.text == 'job "web" in namespace "default" at version 7 not found'
    out = n.job.revert_job("web", 0, enforce_prior_version=1)
    assert wait_eval(n, out["EvalID"])["Status"] == "complete"
    job = n.job.get_job("web")
    assert job["Version"] == 2
    assert job["TaskGroups"][0]["Tasks"][0]["Config"]["args"] == ["300"]
    assert [v["Version"] for v in n.job.get_versions("web")["Versions"]] == [2, 1, 0]
    assert {a["JobVersion"] for a in live_allocs(n, "web")} == {2}
    assert n.job.stable_job("web", 2, True)["Index"] > 0
    assert n.job.get_job("web")["Stable"] is True


def test_stop_then_purge(agent: ServerProcess) -> None:
    n = client(agent)
    register(n, raw_exec_job(update=NO_DEPLOYMENTS))
    out = n.job.deregister_job("web")
    evaluation = wait_eval(n, out["EvalID"])
    assert (evaluation["TriggeredBy"], evaluation["Type"]) == ("job-deregister", "service")
    job = n.job.get_job("web")
    assert (job["Stop"], job["Version"], job["Status"]) == (True, 1, "dead")
    allocs = n.job.get_allocations("web")
    assert {a["DesiredStatus"] for a in allocs} == {"stop"}
    assert {a["DesiredDescription"] for a in allocs} == {"alloc not needed due to job update"}
    out = n.job.deregister_job("web", purge=True)
    assert out["EvalID"]
    wait_eval(n, out["EvalID"])
    r = httpx.get(f"{agent.url}/v1/job/web")
    assert (r.status_code, r.text) == (404, "job not found")
    assert n.jobs.get_jobs() == []
    missing = n.job.deregister_job("never-was")
    assert missing["EvalID"] == ""


def test_enforce_index(agent: ServerProcess) -> None:
    n = client(agent)
    job = raw_exec_job(update=NO_DEPLOYMENTS)
    with pytest.raises(BaseNomadException) as exc:
        n.job.register_job("web", {"Job": job, "EnforceIndex": True, "JobModifyIndex": 5})
    assert exc.value.nomad_resp.text == "Enforcing job modify index 5: job does not exist"
    first = register(n, job, EnforceIndex=True, JobModifyIndex=0)
    with pytest.raises(BaseNomadException) as exc:
        n.job.register_job("web", {"Job": job, "EnforceIndex": True, "JobModifyIndex": 0})
    assert exc.value.nomad_resp.text == "Enforcing job modify index 0: job already exists"
    jmi = first["JobModifyIndex"]
    with pytest.raises(BaseNomadException) as exc:
        n.job.register_job("web", {"Job": job, "EnforceIndex": True, "JobModifyIndex": jmi + 1})
    assert exc.value.nomad_resp.text == (
        f"Enforcing job modify index {jmi + 1}: job exists with conflicting job modify index: {jmi}"
    )
    plan = n.job.plan_job(
        "web", {"Job": raw_exec_job(args=["9"], update=NO_DEPLOYMENTS)}, diff=True
    )
    assert plan["JobModifyIndex"] == jmi
    assert plan["Annotations"]["DesiredTGUpdates"]["app"]["DestructiveUpdate"] == 2
    assert plan["Diff"]["Type"] == "Edited"
    changed = register(
        n, raw_exec_job(args=["9"], update=NO_DEPLOYMENTS), EnforceIndex=True, JobModifyIndex=jmi
    )
    assert changed["JobModifyIndex"] > jmi


def test_bad_input(agent: ServerProcess) -> None:
    n = client(agent)
    r = httpx.post(f"{agent.url}/v1/jobs", content=b'{"Job": {')
    assert r.status_code == 400
    r = httpx.post(f"{agent.url}/v1/jobs", content=b"")
    assert (r.status_code, r.text) == (400, "Request body is empty")
    with pytest.raises(BadRequestNomadException) as bad:
        n.jobs.register_job({"Job": {"Name": "x"}})
    assert bad.value.nomad_resp.text == "Job ID hasn't been provided"
    r = httpx.post(f"{agent.url}/v1/jobs", json={})
    assert (r.status_code, r.text) == (400, "Job must be specified")
    r = httpx.post(f"{agent.url}/v1/job/other", json={"Job": raw_exec_job()})
    assert (r.status_code, r.text) == (400, "Job ID does not match name")
    with pytest.raises(BaseNomadException) as exc:
        n.jobs.register_job({"Job": raw_exec_job(count=-1)})
    assert exc.value.nomad_resp.status_code == 500
    assert exc.value.nomad_resp.text == (
        "1 error occurred:\n\t* Task group app validation failed: 1 error occurred:\n"
        "\t* Task group count can't be negative\n\n\n\n"
    )
    r = httpx.post(
        f"{agent.url}/v1/jobs",
        json={"Job": {**raw_exec_job(), "Update": {"MinHealthyTime": "10s"}}},
    )
    assert r.status_code == 400 and "cannot unmarshal string" in r.text
    register(n, raw_exec_job(update=NO_DEPLOYMENTS))
    with pytest.raises(BaseNomadException) as exc:
        n.jobs.register_job({"Job": {**raw_exec_job(), "Type": "batch", "Update": None}})
    assert exc.value.nomad_resp.text == 'cannot update job from type "service" to "batch"'
    r = httpx.get(f"{agent.url}/v1/job/web/nonsense")
    assert (r.status_code, r.text) == (404, "job not found")
    r = httpx.patch(f"{agent.url}/v1/job/web")
    assert (r.status_code, r.text) == (405, "Invalid method")


def test_unknown_driver_is_a_placement_failure(agent: ServerProcess) -> None:
    n = client(agent)
    job = raw_exec_job(count=2)
    job["TaskGroups"][0]["Tasks"][0]["Driver"] = "docker"
    out = n.job.register_job("web", {"Job": job})
    evaluation = wait_eval(n, out["EvalID"])
    assert evaluation["Status"] == "complete"
    failed = evaluation["FailedTGAllocs"]["app"]
    assert failed["ConstraintFiltered"] == {"missing drivers": 1}
    assert n.evaluation.get_evaluation(evaluation["BlockedEval"])["Status"] == "blocked"
    assert n.job.get_allocations("web") == []
    assert n.job.get_job("web")["Status"] == "pending"
    assert n.job.get_summary("web")["Summary"]["app"]["Queued"] == 2
    assert n.status.leader.get_leader()  # the agent is still serving


def test_eight_registrations_keep_six_versions(agent: ServerProcess) -> None:
    n = client(agent)
    for i in range(8):
        n.job.register_job("web", {"Job": raw_exec_job(args=[str(i)], update=NO_DEPLOYMENTS)})
    versions = n.job.get_versions("web")["Versions"]
    assert [v["Version"] for v in versions] == [7, 6, 5, 4, 3, 2]
    diffs = httpx.get(f"{agent.url}/v1/job/web/versions", params={"diffs": "true"}).json()
    assert len(diffs["Diffs"]) == 5 and diffs["Diffs"][0]["Type"] == "Edited"
    r = httpx.get(f"{agent.url}/v1/job/ghost/versions")
    assert (r.status_code, r.text) == (404, "job versions not found")


def test_jobs_in_another_namespace_and_list_filters(agent: ServerProcess) -> None:
    n = client(agent)
    register(n, raw_exec_job("api", update=NO_DEPLOYMENTS, Meta={"team": "a"}))
    r = httpx.post(
        f"{agent.url}/v1/jobs", params={"namespace": "prod"},
        json={"Job": raw_exec_job("web", update=NO_DEPLOYMENTS)},
    )  # fmt: skip
    assert r.status_code == 200
    wait_eval(n, r.json()["EvalID"])
    names = [ns["Name"] for ns in httpx.get(f"{agent.url}/v1/namespaces").json()]
    assert "prod" in names
    assert [j["ID"] for j in n.jobs.get_jobs()] == ["api"]
    everywhere = httpx.get(f"{agent.url}/v1/jobs", params={"namespace": "*"}).json()
    assert sorted((j["Namespace"], j["ID"]) for j in everywhere) == [
        ("default", "api"), ("prod", "web"),
    ]  # fmt: skip
    assert n.jobs.get_jobs(prefix="zz") == []
    (stub,) = n.jobs.get_jobs(meta=True)
    assert stub["Meta"] == {"team": "a"}
    assert "Meta" not in n.jobs.get_jobs()[0]
    r = httpx.get(f"{agent.url}/v1/job/web/allocations", params={"namespace": "prod"})
    assert len(r.json()) == 2
