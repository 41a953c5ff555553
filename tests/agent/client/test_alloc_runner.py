"""Alloc runner + task runner with the real raw_exec driver and logmon (real processes):
restart policy, batch completion, kill sequence, artifacts, dispatch payload, lifecycle."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agent.client.client_support import (
    FAST_RESTARTS,
    NODE,
    all_dead,
    b64,
    event_types,
    make_alloc,
    pid_alive,
    pinned_tracker,
    py_task,
    read_logs,
    wait_for,
)

from nomadpaas.agent.client.allocrunner.alloc_runner import AllocRunner, AllocRunnerConfig
from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import TaskHook
from nomadpaas.agent.client.allocrunner.taskrunner.task_runner_hooks import build_task_hooks
from nomadpaas.agent.client.allocrunner.workers import SHARED_POOL
from nomadpaas.agent.client.logmon.logmon import LogMon
from nomadpaas.agent.client.state import ClientStateDB
from nomadpaas.agent.drivers.rawexec.driver import RawExecDriver

SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(120)"


class Recorder:
    """The alloc updater: keeps every update and whether it was urgent."""

    def __init__(self) -> None:
        self.updates: list[tuple[dict[str, Any], bool]] = []
        self._lock = threading.Lock()

    def __call__(self, update: dict[str, Any], urgent: bool) -> None:
        with self._lock:
            self.updates.append((update, urgent))

    def statuses(self) -> list[str]:
        with self._lock:
            return [u["ClientStatus"] for u, _ in self.updates]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Callable[..., tuple[AllocRunner, Recorder]]]:
    driver = RawExecDriver()
    logmon = LogMon()
    db = ClientStateDB(tmp_path)
    runners: list[AllocRunner] = []

    def make(alloc: dict[str, Any], **extra: Any) -> tuple[AllocRunner, Recorder]:
        rec = Recorder()

        def hooks() -> list[TaskHook]:
            return build_task_hooks(logmon)

        runner = AllocRunner(
            AllocRunnerConfig(
                alloc=alloc, data_dir=str(tmp_path), driver=driver, state_db=db, node=NODE,
                updater=rec, task_hooks=hooks, tracker_factory=pinned_tracker, **extra,
            )
        )  # fmt: skip
        runners.append(runner)
        runner.run()
        return runner, rec

    try:
        yield make
    finally:
        for r in runners:
            r.kill(prekill=False)
            r.shutdown()
        for task_id in driver.task_ids():
            driver.destroy_task(task_id, force=True)
        logmon.close()


def test_failing_task_restarts_per_policy_then_not_restarting(env: Any) -> None:
    alloc = make_alloc([py_task("web", "import sys; print('boom'); sys.exit(1)")])
    runner, rec = env(alloc)
    assert runner.wait_done(30), runner.task_states()
    state = runner.task_states()["web"]
    # 11 events happened; Nomad keeps the last 10, so `Received` has scrolled off.
    assert event_types(state) == [
        "Task Setup", "Started", "Terminated", "Restarting", "Started", "Terminated",
        "Restarting", "Started", "Terminated", "Not Restarting",
    ]  # fmt: skip
    assert state["State"] == "dead" and state["Failed"] is True
    assert state["Restarts"] == 2
    last = state["Events"][-1]
    assert last["DisplayMessage"] == (
        'Exceeded allowed attempts 2 in interval 30m0s and mode is "fail"'
    )
    assert last["FailsTask"] is True
    terminated = state["Events"][-2]
    assert terminated["ExitCode"] == 1 and terminated["DisplayMessage"] == "Exit Code: 1"
    restarting = state["Events"][3]
    assert restarting["DisplayMessage"] == "Task restarting in 50ms"
    assert runner.client_status() == ("failed", "Failed tasks")
    wait_for(lambda: rec.statuses()[-1:] == ["failed"], what="final update")
    assert read_logs(runner.alloc_dir.root, "web").count("boom") == 3


def test_batch_task_exiting_zero_completes(env: Any) -> None:
    alloc = make_alloc([py_task("job", "print('hello from batch')")], job_type="batch")
    runner, rec = env(alloc)
    assert runner.wait_done(30)
    state = runner.task_states()["job"]
    assert event_types(state) == ["Received", "Task Setup", "Started", "Terminated"]
    assert state["Events"][0]["DisplayMessage"] == "Task received by client"
    assert state["Events"][1]["DisplayMessage"] == "Building Task Directory"
    assert state["State"] == "dead" and state["Failed"] is False
    assert state["FinishedAt"] != "0001-01-01T00:00:00Z"
    assert runner.client_status() == ("complete", "All tasks have completed")
    assert "hello from batch" in read_logs(runner.alloc_dir.root, "job")
    # Every ClientStatus transition was pushed urgently.
    urgent = [u["ClientStatus"] for u, is_urgent in rec.updates if is_urgent]
    assert urgent[0] == "pending" and urgent[-1] == "complete" and "running" in urgent


def test_stop_runs_kill_sequence(env: Any) -> None:
    alloc = make_alloc([py_task("web", SLEEPER, KillTimeout=2_000_000_000)])
    runner, _ = env(alloc)
    wait_for(lambda: runner.client_status()[0] == "running", what="running")
    pid = runner.tasks["web"].main_pid()
    assert pid is not None and pid_alive(pid)
    runner.update({**alloc, "DesiredStatus": "stop"})
    assert runner.wait_done(30)
    state = runner.task_states()["web"]
    assert event_types(state)[-3:] == ["Killing", "Terminated", "Killed"]
    killing, terminated, killed = state["Events"][-3:]
    assert killing["DisplayMessage"] == "Sent interrupt. Waiting 2s before force killing"
    assert killing["KillTimeout"] == 2_000_000_000
    assert terminated["Signal"] == 2 or terminated["ExitCode"] != 0  # SIGINT
    assert killed["DisplayMessage"] == "Task successfully killed"
    assert state["State"] == "dead" and state["Failed"] is False
    assert runner.client_status()[0] == "complete"
    wait_for(lambda: not pid_alive(pid), what="task process gone")


def test_kill_timeout_is_capped_by_max_kill_timeout(env: Any) -> None:
    alloc = make_alloc([py_task("web", SLEEPER, KillTimeout=3600_000_000_000)])
    runner, _ = env(alloc)
    wait_for(lambda: runner.client_status()[0] == "running", what="running")
    runner.update({**alloc, "DesiredStatus": "stop"})
    assert runner.wait_done(60)
    killing = runner.task_states()["web"]["Events"][-3]
    assert killing["KillTimeout"] == 30_000_000_000


def test_unrecoverable_artifact_failure_does_not_restart(env: Any) -> None:
    task = py_task("web", "print(1)", Artifacts=[{"GetterSource": "ftp://example.invalid/a.tgz"}])
    runner, _ = env(make_alloc([task]))
    assert runner.wait_done(30)
    state = runner.task_states()["web"]
    assert event_types(state) == [
        "Received", "Task Setup", "Downloading Artifacts", "Failed Artifact Download",
        "Not Restarting",
    ]  # fmt: skip
    failed = state["Events"][3]
    assert "failed to download artifact" in failed["DisplayMessage"]
    assert failed["DownloadError"] == failed["DisplayMessage"]
    assert state["Events"][4]["DisplayMessage"] == "Error was unrecoverable"
    assert state["Failed"] is True


def test_recoverable_artifact_failure_applies_restart_policy(env: Any) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = f"http://127.0.0.1:{port}/app.tar.gz"
    task = py_task("web", "print(1)", Artifacts=[{"GetterSource": source}])
    runner, _ = env(make_alloc([task]))
    assert runner.wait_done(60)
    state = runner.task_states()["web"]
    types = event_types(state)
    assert types.count("Failed Artifact Download") == 3  # first try + 2 restarts
    assert types.count("Downloading Artifacts") == 3
    assert types[-1] == "Not Restarting" and state["Restarts"] == 2


def test_dispatch_payload_is_written_to_local_file(env: Any) -> None:
    code = "import os; print(open(os.environ['NOMAD_TASK_DIR'] + '/input.txt').read())"
    task = py_task("job", code, DispatchPayload={"File": "input.txt"})
    alloc = make_alloc([task], job_type="batch", job_extra={"Payload": b64(b"payload-bytes\n")})
    runner, _ = env(alloc)
    assert runner.wait_done(30)
    path = Path(runner.alloc_dir.root) / "job" / "local" / "input.txt"
    assert path.read_bytes() == b"payload-bytes\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o777
    assert "payload-bytes" in read_logs(runner.alloc_dir.root, "job")
    assert runner.client_status()[0] == "complete"


def test_user_restart_is_not_counted_against_policy(env: Any) -> None:
    alloc = make_alloc([py_task("web", SLEEPER)], restart={**FAST_RESTARTS, "Attempts": 0})
    runner, _ = env(alloc)
    wait_for(lambda: runner.client_status()[0] == "running", what="running")
    first_pid = runner.tasks["web"].main_pid()
    runner.restart()
    wait_for(
        lambda: event_types(runner.task_states()["web"])[-1] == "Started", what="started again"
    )
    state = runner.task_states()["web"]
    assert event_types(state)[-4:] == ["Restart Signaled", "Terminated", "Restarting", "Started"]
    assert state["Events"][-4]["DisplayMessage"] == "User requested running tasks to restart"
    assert state["Restarts"] == 1 and state["State"] == "running"
    assert event_types(state).count("Task Setup") == 1  # prestart hooks marked done
    second_pid = runner.tasks["web"].main_pid()
    assert second_pid is not None and second_pid != first_pid
    wait_for(lambda: first_pid is not None and not pid_alive(first_pid), what="old pid gone")


def test_lifecycle_order_prestart_main_poststop(env: Any, tmp_path: Path) -> None:
    marker = tmp_path / "order.txt"
    append = "open({!r}, 'a').write('{}\\n')"
    tasks = [
        py_task("main", append.format(str(marker), "main")),
        py_task("post", append.format(str(marker), "post"), Lifecycle={"Hook": "poststop"}),
        py_task("pre", append.format(str(marker), "pre"), Lifecycle={"Hook": "prestart"}),
    ]
    runner, _ = env(make_alloc(tasks, job_type="batch"))
    assert runner.wait_done(30)
    assert marker.read_text().split() == ["pre", "main", "post"]
    assert runner.client_status()[0] == "complete"


def test_sibling_failure_kills_the_other_tasks(env: Any) -> None:
    tasks = [py_task("bad", "import sys; sys.exit(3)"), py_task("good", SLEEPER)]
    runner, _ = env(make_alloc(tasks, restart={**FAST_RESTARTS, "Attempts": 0}))
    assert runner.wait_done(30)
    states = runner.task_states()
    assert all_dead(states)
    assert states["bad"]["Failed"] is True
    good = states["good"]
    assert "Sibling Task Failed" in event_types(good)
    sibling = next(e for e in good["Events"] if e["Type"] == "Sibling Task Failed")
    assert sibling["DisplayMessage"] == 'Task\'s sibling "bad" failed'
    assert event_types(good)[-2:] == ["Terminated", "Killed"] or event_types(good)[-1] == "Killed"
    assert good["Failed"] is False
    assert runner.client_status()[0] == "failed"


def test_leader_death_kills_followers(env: Any) -> None:
    tasks = [py_task("lead", "print('done')", Leader=True), py_task("follower", SLEEPER)]
    runner, _ = env(make_alloc(tasks, job_type="batch"))
    assert runner.wait_done(30)
    follower = runner.task_states()["follower"]
    assert "Leader Task Dead" in event_types(follower)
    assert event_types(follower)[-1] == "Killed"
    assert runner.client_status()[0] == "complete"


def test_validation_failure_fails_task_without_restart(env: Any) -> None:
    task = {"Name": "web", "Driver": "docker", "Config": {"image": "x"}}
    runner, _ = env(make_alloc([task]))
    assert runner.wait_done(30)
    state = runner.task_states()["web"]
    assert event_types(state) == ["Received", "Failed Validation", "Not Restarting"]
    assert state["Failed"] is True and os.path.isdir(runner.alloc_dir.root)


def test_prestart_sidecar_runs_beside_main_and_dies_with_it(env: Any, tmp_path: Path) -> None:
    marker = tmp_path / "poststart.txt"
    tasks = [
        py_task("main", "import time; time.sleep(1.0); print('main done')"),
        py_task("side", SLEEPER, Lifecycle={"Hook": "prestart", "Sidecar": True}),
        py_task("after", f"open({str(marker)!r}, 'w').write('ok')",
                Lifecycle={"Hook": "poststart"}),
    ]  # fmt: skip
    runner, _ = env(make_alloc(tasks, job_type="batch"))
    assert runner.wait_done(30)
    states = runner.task_states()
    assert marker.read_text() == "ok"  # poststart ran once main started
    side = states["side"]
    assert "Main Tasks Dead" in event_types(side) and event_types(side)[-1] == "Killed"
    assert side["StartedAt"] < states["main"]["StartedAt"]
    assert runner.client_status()[0] == "complete"


def test_shutdown_delays_are_waited_before_killing(env: Any) -> None:
    task = py_task("web", SLEEPER, ShutdownDelay=500_000_000)
    alloc = make_alloc([task], group_extra={"ShutdownDelay": 700_000_000})
    runner, _ = env(alloc)
    wait_for(lambda: runner.client_status()[0] == "running", what="running")
    started = time.monotonic()
    runner.update({**alloc, "DesiredStatus": "stop"})
    assert runner.wait_done(30)
    assert time.monotonic() - started >= 1.2  # group 0.7 s + task 0.5 s
    types = event_types(runner.task_states()["web"])
    assert types[-4:] == ["Killing", "Waiting for shutdown delay", "Terminated", "Killed"]


def test_no_shutdown_delay_skips_the_group_delay(env: Any) -> None:
    alloc = make_alloc([py_task("web", SLEEPER)], group_extra={"ShutdownDelay": 20_000_000_000})
    runner, _ = env(alloc)
    wait_for(lambda: runner.client_status()[0] == "running", what="running")
    started = time.monotonic()
    stop = {**alloc, "DesiredStatus": "stop", "DesiredTransition": {"NoShutdownDelay": True}}
    runner.update(stop)
    assert runner.wait_done(30)
    assert time.monotonic() - started < 15


class RecordingHook:
    """An issue-4 style runner hook: records every phase it is called for."""

    name = "recording"

    def __init__(self, runner: AllocRunner) -> None:
        self.runner = runner
        self.calls: list[str] = []

    def prerun(self, alloc: Any, alloc_dir: Any) -> None:
        self.calls.append("prerun")

    def task_states_updated(self, alloc: Any, states: dict[str, Any]) -> None:
        self.calls.append("states:" + ",".join(s["State"] for s in states.values()))
        if all(s["State"] == "running" for s in states.values()):
            self.runner.set_deployment_status({"Healthy": True})

    def update(self, alloc: Any) -> None:
        self.calls.append("update:" + alloc["DesiredStatus"])

    def prekill(self, alloc: Any) -> None:
        self.calls.append("prekill")

    def postrun(self, alloc: Any) -> None:
        self.calls.append("postrun")


def test_extra_runner_hooks_see_every_phase_and_report_health(env: Any) -> None:
    hooks: list[RecordingHook] = []

    def extra(runner: AllocRunner) -> list[Any]:
        hooks.append(RecordingHook(runner))
        return hooks[-1:]

    alloc = make_alloc([py_task("web", SLEEPER)])
    runner, rec = env(alloc, extra_hooks=extra)
    wait_for(lambda: runner.client_status()[0] == "running", what="running")
    wait_for(lambda: any("DeploymentStatus" in u for u, _ in rec.updates), what="health sent")
    sent = next(u for u, urgent in rec.updates if "DeploymentStatus" in u and urgent)
    assert sent["DeploymentStatus"] == {"Healthy": True}
    runner.update({**alloc, "DesiredStatus": "stop"})
    assert runner.wait_done(30)
    wait_for(lambda: "postrun" in hooks[0].calls, what="postrun")
    calls = hooks[0].calls
    # Prerun first: the alloc runner pushes the tasks' `Received` with its set-up.
    assert calls[0] == "prerun" and "states:pending" in calls and "states:running" in calls
    assert calls.index("update:stop") < calls.index("prekill") < calls.index("postrun")
    assert calls[-1] == "postrun"


def test_running_allocations_hold_no_thread_and_stop_promptly(env: Any) -> None:
    # A thousand running allocations must not cost a thread each: setup and starts are
    # steps on the shared runner workers, a running task's loop is parked until the
    # driver's exit watch fires, and the coordinator is event driven.
    before = threading.active_count()
    runners = [env(make_alloc([py_task("web", SLEEPER)]))[0] for _ in range(3)]
    for r in runners:
        wait_for(lambda r=r: r.client_status()[0] == "running", what="running")
    ids = {r.id[:8] for r in runners}
    named = [t.name for t in threading.enumerate() if any(i in t.name for i in ids)]
    assert named == []
    # Only shared threads: the runner workers, the exit watch (at most once each).
    assert threading.active_count() <= before + SHARED_POOL.max_workers + 1
    # No coordinator poll to wait for: each allocation is done as soon as its task died.
    for r in runners:
        r.update({**r.alloc, "DesiredStatus": "stop"})
    for r in runners:
        assert r.wait_done(30), r.task_states()
        assert event_types(r.task_states()["web"])[-2:] == ["Terminated", "Killed"]


def test_a_restart_delay_parks_the_task_and_a_kill_ends_it_at_once(env: Any) -> None:
    # A task waiting out a (long) restart delay holds no thread: a timer resumes it, and a
    # kill resumes it at once, ending it `Killing` → `Killed` without waiting the delay.
    slow = {**FAST_RESTARTS, "Delay": 60 * 1_000_000_000}
    runner, _ = env(make_alloc([py_task("web", "import sys; sys.exit(3)")], restart=slow))
    wait_for(lambda: event_types(runner.task_states()["web"])[-1:] == ["Restarting"],
             what="restarting")  # fmt: skip
    assert not [t.name for t in threading.enumerate() if runner.id[:8] in t.name]
    began = time.monotonic()
    runner.update({**runner.alloc, "DesiredStatus": "stop"})
    assert runner.wait_done(30), runner.task_states()
    assert time.monotonic() - began < 20
    state = runner.task_states()["web"]
    assert event_types(state)[-4:] == ["Terminated", "Restarting", "Killing", "Killed"]
    assert state["State"] == "dead" and state["Failed"] is False
