"""raw_exec driver: start, stop sequence, process groups, command lookup, exit status."""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from agent.drivers.rawexec_support import PY, Harness, live_group_members, wait_for

from nomadpaas.agent.client.taskenv import build_task_env, interpolate_args, pick_dynamic_ports
from nomadpaas.agent.drivers.base import DriverError, TaskNotFoundError
from nomadpaas.agent.drivers.rawexec import driver as driver_module
from nomadpaas.agent.drivers.rawexec import launch as launch_module
from nomadpaas.agent.drivers.rawexec.driver import (
    RawExecDriver,
    kill_orphaned_tasks,
    lookup_bin,
    parse_signal,
)
from nomadpaas.agent.drivers.rawexec.handle import proc_start_time

SERVE = "import http.server,sys;http.server.test(http.server.SimpleHTTPRequestHandler,port=int(sys.argv[1]),bind='127.0.0.1')"  # noqa: E501


def _http_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _port_free(port: int) -> bool:
    """Nobody listens on ``port`` (SO_REUSEADDR: the server's TIME_WAIT sockets don't count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_http_server_task_answers_then_stops_gracefully_on_sigint(harness: Harness) -> None:
    (port,) = pick_dynamic_ports(1)
    ports = [{"Label": "http", "Value": port, "To": 0, "HostIP": "127.0.0.1"}]
    env = build_task_env({"ID": "x"}, {"Name": "web"}, {}, ports, harness.alloc.root)
    argv = ["-m", "http.server", "${NOMAD_PORT_http}", "--bind", "127.0.0.1"]
    args = interpolate_args(argv, env, {})
    harness.start("web", PY, *args, env=env)
    wait_for(lambda: _http_ok(port), what="http.server to answer")

    t0 = time.monotonic()
    harness.driver.stop_task("web", timeout_s=20.0)  # default KillSignal: SIGINT
    result = harness.driver.wait_task("web", 0)
    assert result is not None
    # http.server exits 0 on KeyboardInterrupt; a SIGKILL after the timeout would give 137.
    assert (result.exit_code, result.signal) == (0, 0)
    assert time.monotonic() - t0 < 15.0
    assert _port_free(port)
    harness.wait_log("web", "Keyboard interrupt received")
    harness.wait_log("web", "GET / HTTP/1.1", stream="stderr")


def test_task_ignoring_sigint_is_killed_after_kill_timeout(harness: Harness) -> None:
    h = harness.start("stubborn", "sh", "-c", "trap '' INT; echo ready; while :; do sleep 1; done")
    harness.wait_log("stubborn", "ready")
    t0 = time.monotonic()
    harness.driver.stop_task("stubborn", timeout_s=1.0)
    elapsed = time.monotonic() - t0
    pgid = int(h.driver_state["PGID"])
    result = harness.driver.wait_task("stubborn", 0)
    assert result is not None
    assert (result.exit_code, result.signal) == (137, 9)
    assert elapsed >= 1.0
    wait_for(lambda: live_group_members(pgid) == [], timeout_s=10, what="group to be empty")


def test_stop_kills_the_whole_process_group(harness: Harness) -> None:
    h = harness.start("bg", "sh", "-c", "sleep 300 & echo child=$!; wait")
    harness.wait_log("bg", "child=")
    child = int(harness.log("bg").split("child=")[1].split()[0])
    pgid = int(h.driver_state["PGID"])
    assert child in live_group_members(pgid)
    harness.driver.stop_task("bg", timeout_s=5.0)
    # SIGKILL is delivered asynchronously: poll briefly rather than race the kernel.
    wait_for(lambda: live_group_members(pgid) == [], timeout_s=10, what="group to be empty")


def test_leftover_children_die_when_the_task_exits_by_itself(harness: Harness) -> None:
    h = harness.start("daemon", "sh", "-c", "sleep 300 & echo child=$!; exit 0")
    result = harness.driver.wait_task("daemon", 20)
    assert result is not None and result.exit_code == 0
    pgid = int(h.driver_state["PGID"])
    wait_for(lambda: live_group_members(pgid) == [], timeout_s=10, what="group to be empty")
    assert "child=" in harness.log("daemon")


def test_npm_start_style_child_holding_a_port_does_not_survive(harness: Harness) -> None:
    # sh does not exec the last command here (`; echo`), so python is sh's child, like npm → node.
    (port,) = pick_dynamic_ports(1)
    script = f'{PY} -c "{SERVE}" {port}; echo after'
    h = harness.start("npm", "sh", "-c", script)
    wait_for(lambda: _http_ok(port), what="child http server")
    harness.driver.stop_task("npm", timeout_s=2.0)
    pgid = int(h.driver_state["PGID"])
    wait_for(lambda: live_group_members(pgid) == [], timeout_s=10, what="group to be empty")
    wait_for(lambda: _port_free(port), timeout_s=5.0, what="port to be released")


def test_sigint_works_even_when_the_agent_ignores_it(harness: Harness) -> None:
    # `nomadpaas agent &` from a script starts the agent with SIGINT ignored; exec keeps that.
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        harness.start("py", PY, "-c", "import time; print('ready', flush=True); time.sleep(300)")
    finally:
        signal.signal(signal.SIGINT, old)
    harness.wait_log("py", "ready")
    t0 = time.monotonic()
    harness.driver.stop_task("py", timeout_s=20.0)
    result = harness.driver.wait_task("py", 0)
    # Python dies of the SIGINT it did not ignore (130/2), not of SIGKILL after the timeout.
    assert result is not None and (result.exit_code, result.signal) == (130, 2)
    assert time.monotonic() - t0 < 15.0
    harness.wait_log("py", "KeyboardInterrupt", stream="stderr")


def test_exit_code_and_signal_are_reported(harness: Harness) -> None:
    harness.start("code", "sh", "-c", "exit 3")
    harness.start("sig", "sh", "-c", "kill -TERM $$")
    code = harness.driver.wait_task("code", 20)
    sig = harness.driver.wait_task("sig", 20)
    assert code is not None and (code.exit_code, code.signal) == (3, 0)
    assert not code.successful()
    assert sig is not None and (sig.exit_code, sig.signal) == (143, 15)
    status = harness.driver.inspect_task("code")
    assert status.state == "exited" and status.completed_at_ns >= status.started_at_ns


def test_wait_task_times_out_while_running_and_signal_task_delivers(harness: Harness) -> None:
    script = "trap 'echo got-usr1; exit 5' USR1; echo ready; sleep 300 & wait"
    harness.start("sleeper", "sh", "-c", script)
    harness.wait_log("sleeper", "ready")
    assert harness.driver.wait_task("sleeper", 0.2) is None
    assert harness.driver.inspect_task("sleeper").state == "running"
    harness.driver.signal_task("sleeper", "SIGUSR1")
    result = harness.driver.wait_task("sleeper", 20)
    assert result is not None and result.exit_code == 5
    harness.wait_log("sleeper", "got-usr1")


def test_the_handle_records_the_start_times_proc_shows(harness: Harness) -> None:
    # The native executor announces both start times (read by the processes themselves);
    # they must be the ones /proc shows, or every later PID-reuse check would fail.
    handle = harness.start("times", "sleep", "30")
    state = handle.driver_state
    assert state["PIDStartTime"] == proc_start_time(state["PID"]) != 0
    assert state["WrapperStartTime"] == proc_start_time(state["WrapperPID"]) != 0


def test_cwd_is_task_dir_and_env_is_passed(harness: Harness) -> None:
    harness.start("envy", "sh", "-c", "pwd; echo FOO=$FOO", env={"FOO": "bar baz"})
    assert harness.driver.wait_task("envy", 20) is not None
    out = harness.log("envy")
    assert out.splitlines()[0] == harness.alloc.task_dir("envy").dir
    assert "FOO=bar baz" in out


def test_stderr_goes_to_its_own_log(harness: Harness) -> None:
    harness.start("err", "sh", "-c", "echo out; echo err >&2")
    assert harness.driver.wait_task("err", 20) is not None
    harness.wait_log("err", "err\n", stream="stderr")
    harness.wait_log("err", "out\n")


def test_destroy_running_task_needs_force(harness: Harness) -> None:
    h = harness.start("d", "sh", "-c", "sleep 300")
    with pytest.raises(DriverError, match="cannot destroy running task"):
        harness.driver.destroy_task("d")
    harness.driver.destroy_task("d", force=True)
    pgid = int(h.driver_state["PGID"])
    wait_for(lambda: live_group_members(pgid) == [], timeout_s=10, what="group to be empty")
    assert not os.path.exists(f"/proc/{h.driver_state['WrapperPID']}/stat") or not _alive(
        int(h.driver_state["WrapperPID"])
    )
    with pytest.raises(TaskNotFoundError):
        harness.driver.inspect_task("d")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def test_kill_orphaned_tasks_ends_tasks_under_a_data_dir_only(
    harness: Harness, tmp_path_factory: pytest.TempPathFactory
) -> None:
    inside = harness.start("inside", "sh", "-c", "sleep 300 & wait")
    other = Harness(str(tmp_path_factory.mktemp("other")), harness.driver, harness.logmon)
    outside = other.start("outside", "sh", "-c", "sleep 300 & wait")
    try:
        assert kill_orphaned_tasks(os.path.dirname(harness.alloc.alloc_root)) == 1
        pgid = int(inside.driver_state["PGID"])
        wait_for(lambda: live_group_members(pgid) == [], timeout_s=10, what="group to be empty")
        wait_for(lambda: not _alive(int(inside.driver_state["WrapperPID"])), timeout_s=10)
        assert harness.driver.inspect_task("outside").state == "running"
        assert live_group_members(int(outside.driver_state["PGID"])) != []
    finally:
        other.kill_leftovers()


def test_unknown_binary_is_an_error(harness: Harness) -> None:
    with pytest.raises(DriverError, match='binary "no-such-binary-xyz" could not be found'):
        harness.start("missing", "no-such-binary-xyz")


def test_lookup_order_local_then_task_dir_then_host_then_path(tmp_path: Path) -> None:
    task_dir = str(tmp_path)
    os.makedirs(os.path.join(task_dir, "local", "bin"))
    for rel in ("local/tool", "tool", "local/bin/sh"):
        with open(os.path.join(task_dir, rel), "w") as f:
            f.write("#!/bin/sh\n")
    assert lookup_bin(task_dir, "tool") == os.path.join(task_dir, "local", "tool")
    os.unlink(os.path.join(task_dir, "local", "tool"))
    assert lookup_bin(task_dir, "tool") == os.path.join(task_dir, "tool")
    # An absolute command is first looked up *inside* local/ and the task dir, as Nomad does.
    assert lookup_bin(task_dir, "/bin/sh") == os.path.join(task_dir, "local", "bin", "sh")
    assert lookup_bin(task_dir, "/usr/bin/env") == "/usr/bin/env"
    assert os.path.basename(lookup_bin(task_dir, "env")) == "env"
    with pytest.raises(DriverError, match='binary "nope" could not be found'):
        lookup_bin(task_dir, "nope")


def test_path_lookups_are_remembered_briefly_and_rechecked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for d in (first, second):
        d.mkdir()
        tool = d / "npx-tool"
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{first}:{second}")
    task_dir = str(tmp_path / "task")
    assert lookup_bin(task_dir, "npx-tool") == str(first / "npx-tool")
    # Remembered: a burst of starts does not walk $PATH again...
    monkeypatch.setattr(driver_module.shutil, "which", lambda cmd: None)
    assert lookup_bin(task_dir, "npx-tool") == str(first / "npx-tool")
    monkeypatch.undo()
    monkeypatch.setenv("PATH", f"{first}:{second}")
    # ...but a remembered binary that is gone is looked up again,
    (first / "npx-tool").unlink()
    assert lookup_bin(task_dir, "npx-tool") == str(second / "npx-tool")
    # another $PATH is another lookup, and a miss is not remembered.
    monkeypatch.setenv("PATH", str(first))
    with pytest.raises(DriverError, match="could not be found"):
        lookup_bin(task_dir, "npx-tool")
    (first / "npx-tool").write_text("#!/bin/sh\n")
    (first / "npx-tool").chmod(0o755)
    assert lookup_bin(task_dir, "npx-tool") == str(first / "npx-tool")


def test_parse_signal_accepts_nomad_spellings() -> None:
    assert parse_signal("") == 2
    assert parse_signal("SIGTERM") == 15
    assert parse_signal("hup") == 1
    assert parse_signal("9") == 9
    with pytest.raises(DriverError, match="Unknown signal"):
        parse_signal("SIGNOPE")


def test_duplicate_task_id_is_refused(harness: Harness) -> None:
    harness.start("dup", "sh", "-c", "sleep 300")
    with pytest.raises(DriverError, match="already started"):
        harness.start("dup", "sh", "-c", "sleep 300")


def test_unknown_task_operations_raise_not_found() -> None:
    d = RawExecDriver()
    with pytest.raises(TaskNotFoundError, match="task not found for given id: nope"):
        d.wait_task("nope", 0)
    with pytest.raises(TaskNotFoundError):
        d.stop_task("nope", 1.0)


def test_state_dir_gets_its_ack_fifo_and_loses_a_last_runs_files(tmp_path: Path) -> None:
    import stat

    prepare = launch_module.prepare_state_dir
    fresh = tmp_path / "web" / "private"
    fresh.mkdir(parents=True)
    prepare(str(fresh))  # the task dir hook's dir, first run
    assert stat.S_ISFIFO((fresh / "task.ack").stat().st_mode)
    assert sorted(os.listdir(fresh)) == ["task.ack"]

    (fresh / "task.pid").write_text("123\n")  # a restart: the last run's files go
    (fresh / "task.exit").write_text("0\n")
    (fresh / "keep").write_text("x")
    prepare(str(fresh))
    assert sorted(os.listdir(fresh)) == ["keep", "task.ack"]
    assert stat.S_ISFIFO((fresh / "task.ack").stat().st_mode)

    missing = tmp_path / "other" / "private"  # no task dir hook ran: made, private
    prepare(str(missing))
    assert stat.S_IMODE(missing.stat().st_mode) == 0o700
    assert stat.S_ISFIFO((missing / "task.ack").stat().st_mode)
