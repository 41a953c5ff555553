"""Shared test helpers: free loopback ports, real server processes, readiness waits.

Every server binds 127.0.0.1 on a random free port and is killed by PID when the test
ends. Nothing here is a fake: these start the real agent and the real S3 server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from nomadpaas.stack import ports

if TYPE_CHECKING:
    import pytest

    from nomadpaas.storage.s3 import S3Storage


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: Sequence[str]
) -> subprocess.CompletedProcess[str]:
    """`nomadpaas.cli.main()` in this process with `args` as argv, the environment already
    set by the caller: its exit code and what it printed (the global --json reset around)."""
    # Imported here: the benches and agent tests that use this module never load the CLI.
    from nomadpaas.cli import main
    from nomadpaas.cli.output import set_global_json

    monkeypatch.setattr(sys, "argv", ["nomadpaas", *args])
    capsys.readouterr()
    set_global_json(False)
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        set_global_json(False)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


@contextmanager
def threads_started_from(package_dir: str) -> Iterator[list[threading.Thread]]:
    """The threads started, while the block runs, by code under `package_dir` (any
    frame of the starting stack): the threads a component makes, whatever other threads the
    process starts or ends meanwhile (servers' request handlers, agent parts of earlier
    tests), which is why counting `threading.enumerate()` is not a test."""
    started: list[threading.Thread] = []
    real_start = threading.Thread.start
    prefix = package_dir.rstrip(os.sep) + os.sep

    def recording_start(self: threading.Thread) -> None:
        if any(f.filename.startswith(prefix) for f in traceback.extract_stack()):
            started.append(self)
        real_start(self)

    threading.Thread.start = recording_start  # type: ignore[method-assign]
    try:
        yield started
    finally:
        threading.Thread.start = real_start  # type: ignore[method-assign]


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago, outside the ranges the kernel
    gives outgoing connections and Nomad gives tasks (a restarted server gets it back)."""
    return ports.free_port()


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until `url` answers with any status < 500; fail early if `proc` died."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            r = httpx.get(url, timeout=1.0)
            if r.status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s (last error: {last})")


#: Command-line flags of our servers that name a port to bind (agent, S3 server).
PORT_FLAGS = ("--http-port", "--consul-port", "--port")
#: Starts of a server whose port was taken between `free_port` and its bind.
PORT_ATTEMPTS = 3


@dataclass
class ServerProcess:
    """A real server run as a child process; restartable on the same port and data dir."""

    argv: Sequence[str]
    ready_path: str
    port: int
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    _output_start: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def consul_url(self) -> str:
        """The agent's Consul-compatible API (its `--consul-port`)."""
        argv = list(self.argv)
        return f"http://127.0.0.1:{argv[argv.index('--consul-port') + 1]}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start the server and wait until it answers. On its first start only, a server
        that exits because one of its ports was taken meanwhile (`free_port` can only say
        a port *was* free: an outgoing connection's source port or another test's server
        may take it first) is started again on fresh ports, up to `PORT_ATTEMPTS` times."""
        first_start = self.proc is None
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._spawn()
            try:
                wait_http(self.url + self.ready_path, timeout=timeout, proc=self.proc)
                return self
            except RuntimeError:
                retry = first_start and attempt < PORT_ATTEMPTS and self._lost_a_port()
                if not retry:
                    raise
                self._take_fresh_ports()
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        env = {**os.environ, **self.env}
        # Output goes to the log (or a scratch file): it tells a lost port from a crash.
        log = open(self._output_path(), "ab")  # noqa: SIM115
        self._output_start = log.tell()
        with log:
            self.proc = subprocess.Popen(
                list(self.argv),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _output_path(self) -> Path:
        if self.log_path is not None:
            return self.log_path
        return self.data_dir.parent / f".{self.data_dir.name}.server-output"

    def _lost_a_port(self) -> bool:
        with open(self._output_path(), "rb") as f:
            f.seek(self._output_start)
            return b"address already in use" in f.read().lower()

    def _take_fresh_ports(self) -> None:
        argv = list(self.argv)
        for flag in PORT_FLAGS:
            if flag in argv:
                i = argv.index(flag) + 1
                old, argv[i] = int(argv[i]), str(free_port())
                if old == self.port:
                    self.port = int(argv[i])
        self.argv = argv

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the server (SIGKILL by default: the crash case) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def restart(self) -> ServerProcess:
        self.kill()
        return self.start()


def agent_process(
    data_dir: Path,
    acl_token_file: Path | None = None,
    log_path: Path | None = None,
    extra_args: Sequence[str] = (),
) -> ServerProcess:
    """`nomadpaas agent --dev` on random loopback ports (not started yet); `extra_args`
    are appended (e.g. ``["-meta", "nomadpaas.build_cache_dir=DIR"]`` as `up` passes)."""
    port = free_port()
    argv = [
        sys.executable, "-m", "nomadpaas", "agent", "--dev",
        "--bind", "127.0.0.1",
        "--http-port", str(port),
        "--consul-port", str(free_port()),
        "--data-dir", str(data_dir),
    ]  # fmt: skip
    if acl_token_file is not None:
        argv += ["--acl-token-file", str(acl_token_file)]
    argv += list(extra_args)
    return ServerProcess(argv, "/v1/status/leader", port, data_dir, log_path=log_path)


@contextmanager
def node_cache_agent(tmp_path: Path, node_cache: Path) -> Iterator[ServerProcess]:
    """An agent started as `nomadpaas up` starts it, with the node-local build cache at
    `node_cache` (`-meta nomadpaas.build_cache_dir=...`), data under `tmp_path / "agent"`;
    killed after the block, and any task it left running with it."""
    agent = agent_process(
        tmp_path / "agent",
        log_path=tmp_path / "agent.log",
        extra_args=["-meta", f"nomadpaas.build_cache_dir={node_cache}"],
    )
    agent.start()
    try:
        yield agent
    finally:
        stop_agent(agent)


def stop_agent(agent: ServerProcess) -> None:
    """Kill the agent, then its tasks: tasks outlive a killed agent by design (re-attach).

    Its executor spawner sees the agent go and exits, but an executor it is forking just
    then is still born (and names itself a moment later): the tasks are looked for once
    the spawner is gone (at most SPAWNER_EXIT_S)."""
    from nomadpaas.agent.drivers.rawexec.driver import kill_orphaned_tasks
    from nomadpaas.agent.drivers.rawexec.orphans import parent_pid, process_argvs
    from nomadpaas.agent.drivers.rawexec.spawner import SPAWNER_MARK

    pid = agent.proc.pid if agent.proc is not None else None
    spawners = [
        child
        for child, argv in process_argvs()
        if argv[1:2] == [SPAWNER_MARK.encode()] and parent_pid(child) == pid
    ]
    agent.kill()
    deadline = time.monotonic() + SPAWNER_EXIT_S
    while any(os.path.exists(f"/proc/{child}") for child in spawners):
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    kill_orphaned_tasks(str(agent.data_dir))


#: How long `stop_agent` waits for a killed agent's executor spawner to exit.
SPAWNER_EXIT_S = 5.0


def s3_process(data_dir: Path, log_path: Path | None = None) -> ServerProcess:
    """The embedded, durable S3 server on a random loopback port (not started yet)."""
    port = free_port()
    argv = [
        sys.executable, "-m", "nomadpaas.stack.s3server",
        "--bind", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
    ]  # fmt: skip
    return ServerProcess(argv, "/", port, data_dir, log_path=log_path)


def bucket_storage(endpoint: str) -> S3Storage:
    """The S3Storage the tests use against an embedded S3 server at `endpoint`: bucket
    `nomadpaas`, the server's fixed test credentials."""
    from nomadpaas.storage.s3 import S3Storage

    return S3Storage(
        endpoint, "nomadpaas", region="us-east-1", access_key_id="k", secret_access_key="s"
    )


def run_concurrently(work: Callable[[int], None], count: int, timeout_s: float = 120.0) -> None:
    """Run `work(0)` … `work(count - 1)` on as many threads at once; fail on the first
    error any of them raised, or on one still running after `timeout_s`."""
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout_s)
    assert not errors, errors[0]
    assert not any(thread.is_alive() for thread in threads)


def run_isolated_python(code: str) -> str:
    """Run `code` in a fresh `python -I -S` (no site, no user env); its stdout."""
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout
