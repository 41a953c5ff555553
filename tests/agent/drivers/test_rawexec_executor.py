"""The native executor's build and cache (executor.py): built once per machine into the
user's cache dir, named by a digest of its source, never trusted when others could have
written it, and absent (the sh wrapper then runs tasks) without a C compiler. The
executor's behaviour is covered by every driver test, which runs under both; here, in both
of its modes (started directly, forked by a spawner), what the driver never provokes: a
failing exec, a failure before the announcement, a bare command found on the task's PATH."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nomadpaas.agent.drivers.rawexec import executor
from nomadpaas.agent.drivers.rawexec.driver import RawExecDriver, wrapper_state_dir
from nomadpaas.agent.drivers.rawexec.handle import readable
from nomadpaas.agent.drivers.rawexec.orphans import process_argvs
from nomadpaas.agent.drivers.rawexec.spawner import Spawner

WAIT_S = 30.0  # generous: a loaded 2-core machine

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler"
)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    executor.executor_path.cache_clear()
    try:
        yield tmp_path / "cache" / "nomadpaas"
    finally:
        executor.executor_path.cache_clear()


def test_built_once_into_the_cache_dir_and_reused(cache: Path) -> None:
    path = executor.executor_path()
    assert path is not None and Path(path).parent == cache
    assert Path(path).name.startswith(executor.NAME_PREFIX)
    mtime = os.stat(path).st_mtime_ns
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    executor.executor_path.cache_clear()
    assert executor.executor_path() == path  # found, not rebuilt
    assert os.stat(path).st_mtime_ns == mtime
    assert sorted(p.name for p in cache.iterdir()) == [Path(path).name]  # no temporaries


def test_a_binary_others_could_have_written_is_rebuilt(cache: Path) -> None:
    path = executor.executor_path()
    assert path is not None
    Path(path).write_bytes(b"#!/bin/sh\necho planted\n")
    os.chmod(path, 0o777)
    executor.executor_path.cache_clear()
    assert executor.executor_path() == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o755
    assert Path(path).read_bytes()[:4] == b"\x7fELF"  # a fresh build, not the planted file


def test_without_a_compiler_tasks_run_under_the_sh_wrapper(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(cache.parent / "empty"))
    assert executor.executor_path() is None
    monkeypatch.setenv("PATH", os.defpath)  # setsid(1) and env(1) for the wrapper
    assert RawExecDriver().executor is None


def test_usage_errors_and_argv_recognition(cache: Path) -> None:
    path = executor.executor_path()
    assert path is not None
    bad = subprocess.run([path, "--other", "x", "true"], capture_output=True, check=False)
    assert bad.returncode == 2 and b"usage" in bad.stderr
    argv = [path.encode(), executor.MARK.encode(), b"/state", b"/bin/true"]
    assert wrapper_state_dir(argv) == "/state"
    assert wrapper_state_dir([b"/usr/bin/python3", executor.MARK.encode(), b"/state"]) is None
    assert wrapper_state_dir([path.encode(), b"--other", b"/state"]) is None


@dataclass(frozen=True)
class Run:
    announced: str
    stdout: str
    stderr: str
    exit_status: str


def _read_line(fd: int) -> str:
    """Up to the first newline or EOF (every executor path writes a line or exits)."""
    deadline = time.monotonic() + WAIT_S
    data = b""
    while not data.endswith(b"\n"):
        assert readable(fd, deadline - time.monotonic()), "nothing announced"
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode()


def _run(
    mode: str, tmp: Path, state: Path, command: str, args: list[str], env: dict[str, str]
) -> Run:
    """Start ``command`` under the executor in ``mode`` (direct or spawner), wait for it to
    exit, release the executor; what it announced, printed and recorded."""
    path = executor.executor_path()
    if path is None:
        pytest.skip("the executor could not be built")
    out, err = tmp / "out", tmp / "err"
    r, w = os.pipe2(os.O_CLOEXEC)
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    ours = [r, w, os.open(out, flags, 0o600), os.open(err, flags, 0o600)]
    fds = (ours[1], ours[2], ours[3])
    spawner = Spawner(path)
    proc: subprocess.Popen[bytes] | None = None
    pidfd = None
    try:
        if mode == "spawner":
            spawner.spawn(str(state), str(tmp), command, args, env, fds)  # no reply
        else:
            argv = [path, executor.MARK, str(state), command, *args]
            proc = subprocess.Popen(
                argv, stdin=fds[0], stdout=fds[1], stderr=fds[2], cwd=tmp, env=env
            )
            pidfd = os.pidfd_open(proc.pid)
        for fd in fds:  # the executor's now: EOF on r once it and the task are done
            ours.remove(fd)
            os.close(fd)
        announced = _read_line(r)
        deadline = time.monotonic() + WAIT_S
        if pidfd is None:  # a spawner's executor names itself in the announcement
            fields = announced.split()
            if announced.startswith("!"):  # it never started a task: it exits by itself
                while _executors_of(state):
                    assert time.monotonic() < deadline, "the executor did not exit"
                    time.sleep(0.01)
                return Run(announced, out.read_text(), err.read_text(), "")
            pidfd = os.pidfd_open(int(fields[3]))  # waits for its release: alive
        exit_file = state / "task.exit"
        while state.is_dir() and not (exit_file.exists() and exit_file.read_text()[-1:] == "\n"):
            assert time.monotonic() < deadline, "no task.exit"
            time.sleep(0.01)
        status = exit_file.read_text() if state.is_dir() else ""
        while state.is_dir() and not readable(pidfd, 0):  # release it: it opens the FIFO
            try:
                os.close(os.open(state / "task.ack", os.O_WRONLY | os.O_NONBLOCK))
                break
            except OSError as exc:
                assert exc.errno == errno.ENXIO and time.monotonic() < deadline
                time.sleep(0.01)
        assert readable(pidfd, WAIT_S), "the executor did not exit once released"
        if proc is not None:
            assert proc.wait(WAIT_S) == 0
        return Run(announced, out.read_text(), err.read_text(), status)
    finally:
        for fd in ours:
            os.close(fd)
        spawner.close()
        if pidfd is not None:
            if not readable(pidfd, 0):  # still running: a failed test
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
        if proc is not None:
            proc.wait(WAIT_S)


def _executors_of(state: Path) -> list[int]:
    return [pid for pid, argv in process_argvs() if wrapper_state_dir(argv) == str(state)]


def _state_dir(tmp: Path) -> Path:
    state = tmp / "state"
    state.mkdir()
    os.mkfifo(state / "task.ack")
    return state


@pytest.mark.parametrize("mode", ["direct", "spawner"])
def test_an_exec_failure_is_reported_as_a_shell_does(tmp_path: Path, mode: str) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01 neither ELF nor a script")
    junk.chmod(0o755)
    cases = [
        (str(junk), "Exec format error", "126"),
        (str(tmp_path / "gone"), "No such file or directory", "127"),
    ]
    for i, (command, why, status) in enumerate(cases):
        case = tmp_path / str(i)
        case.mkdir()
        run = _run(mode, case, _state_dir(case), command, ["arg"], {"PATH": os.defpath})
        pid, task_start, executor_start, executor_pid = map(int, run.announced.split())
        assert pid > 0 and task_start > 0 and executor_start > 0 and executor_pid > 0
        assert (case / "state" / "task.pid").read_text() == f"{pid}\n"
        assert (run.stderr, run.exit_status) == (f"{command}: {why}\n", f"{status}\n")


@pytest.mark.parametrize("mode", ["direct", "spawner"])
def test_a_failure_before_the_announcement_is_announced_instead(tmp_path: Path, mode: str) -> None:
    state = tmp_path / "no-such-state-dir"
    run = _run(mode, tmp_path, state, "/bin/true", [], {"PATH": os.defpath})
    assert run.announced == f"!{errno.ENOENT} {state}/task.pid\n"
    assert (run.stdout, run.stderr) == ("", "")


@pytest.mark.parametrize("mode", ["direct", "spawner"])
def test_a_bare_command_is_found_on_the_tasks_path(tmp_path: Path, mode: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "only-on-the-tasks-path"
    tool.write_text('#!/bin/sh\necho "found $1 $GREETING"\n')
    tool.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.defpath}", "GREETING": "hello"}
    run = _run(mode, tmp_path, _state_dir(tmp_path), tool.name, ["it"], env)
    assert (run.stdout, run.stderr, run.exit_status) == ("found it hello\n", "", "0\n")
