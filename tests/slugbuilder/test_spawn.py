"""spawn.py against real processes: what a child gets is what subprocess.Popen gave it."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nomadpaas.slugbuilder.spawn import Child, decode_text, kill_group, spawn

#: Seconds any one child may take before the test gives up on it.
CHILD_TIMEOUT_S = 30.0

#: What a child reports of itself: session, stdin's file, its descriptors, its
#: environment, and what it reads from stdin.
REPORT = """
import json, os, sys
fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
print(json.dumps({
    "leads_session": os.getsid(0) == os.getpid(),
    "stdin": os.readlink("/proc/self/fd/0"),
    "stdin_read": sys.stdin.read(),
    "stderr_is_stdout": os.fstat(1).st_ino == os.fstat(2).st_ino,
    "fds": fds[:3],
    "extra_fds": len(fds) - 4,  # 0-2 and the listing's own
    "env": dict(os.environ),
}))
"""


def _report_argv() -> list[str]:
    return [sys.executable, "-I", "-S", "-c", REPORT]


def _spawned_report(env: dict[str, str], stderr: str = "stdout") -> dict[str, object]:
    with spawn(_report_argv(), env, stderr=stderr) as child:  # type: ignore[arg-type]
        output = child.communicate(CHILD_TIMEOUT_S)
    assert output is not None and child.returncode == 0
    report: dict[str, object] = json.loads(output)
    return report


def _popen_report(env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        _report_argv(),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        timeout=CHILD_TIMEOUT_S,
        check=True,
    )
    report: dict[str, object] = json.loads(done.stdout)
    return report


def test_a_child_gets_what_popen_gave_it() -> None:
    env = {"PATH": os.environ.get("PATH", os.defpath), "ONLY": "this", "LC_ALL": "C.UTF-8"}
    # An inheritable descriptor of ours: Popen's close_fds kept it from the child.
    leaked_r, leaked_w = os.pipe()
    os.set_inheritable(leaked_r, True)
    try:
        spawned, popen = _spawned_report(env), _popen_report(env)
    finally:
        os.close(leaked_r)
        os.close(leaked_w)
    assert spawned == popen
    assert spawned["leads_session"] is True and spawned["extra_fds"] == 0
    assert spawned["stdin"] == "/dev/null" and spawned["stdin_read"] == ""
    assert spawned["stderr_is_stdout"] is True
    assert spawned["env"] == env  # exactly the env given, nothing added


def _signal_masks(status: bytes) -> dict[str, int]:
    """SigIgn and SigBlk of a /proc/<pid>/status, as bit masks (bit n-1: signal n)."""
    fields = dict(line.split(b":", 1) for line in status.splitlines())
    return {name: int(fields[name.encode()].strip(), 16) for name in ("SigIgn", "SigBlk")}


def test_a_child_s_signals_are_what_popen_left_them() -> None:
    argv = ["/bin/sh", "-c", "exec cat /proc/self/status"]  # not Python: it ignores SIGPIPE
    with spawn(argv, {}, stderr="devnull") as child:
        spawned = _signal_masks(child.communicate(CHILD_TIMEOUT_S) or b"")
    popen = _signal_masks(
        subprocess.run(argv, env={}, capture_output=True, check=True, timeout=60).stdout
    )
    # glibc's posix_spawn leaves its two internal signals (32 SIGCANCEL, 33 SIGSETXID)
    # ignored in the child, and the environment may have them ignored already (Popen's
    # child then has them too); nothing else may differ.
    internal = (1 << 31) | (1 << 32)
    assert spawned["SigIgn"] & ~internal == popen["SigIgn"] & ~internal
    assert spawned["SigBlk"] == popen["SigBlk"]
    sigpipe, sigxfsz = 1 << (13 - 1), 1 << (25 - 1)
    assert not spawned["SigIgn"] & (sigpipe | sigxfsz)  # back at their defaults


def test_stderr_to_devnull_or_to_the_pipe(tmp_path: Path) -> None:
    script = tmp_path / "both"
    script.write_text("#!/bin/sh\necho out\necho err >&2\n")
    script.chmod(0o755)
    with spawn([str(script)], {}, stderr="devnull") as child:
        assert child.communicate(CHILD_TIMEOUT_S) == b"out\n"
    with spawn([str(script)], {}, stderr="stdout") as child:
        assert sorted(child.stdout.read().split()) == [b"err", b"out"]
        assert child.wait() == 0


def _script(path: Path, text: str, mode: int = 0o755) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _popen_error(argv: list[str], env: dict[str, str]) -> OSError:
    with pytest.raises(OSError) as caught:
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=False)
    return caught.value


def _spawn_error(argv: list[str], env: dict[str, str]) -> OSError:
    with pytest.raises(OSError) as caught:
        spawn(argv, env, stderr="devnull")
    return caught.value


def test_a_bare_name_is_looked_up_on_the_env_s_path_as_popen_does(tmp_path: Path) -> None:
    first, second, empty = tmp_path / "first", tmp_path / "second", tmp_path / "empty"
    empty.mkdir()
    _script(first / "tool", "#!/bin/sh\necho first\n", mode=0o644)  # not executable
    _script(second / "tool", "#!/bin/sh\necho second\n")
    env = {"PATH": f"{empty}:{first}:{second}"}
    with spawn(["tool"], env, stderr="devnull") as child:
        assert child.communicate(CHILD_TIMEOUT_S) == b"second\n"  # EACCES is not the end
    # Only the unexecutable one: Popen's first error that is not "not there", named so.
    env = {"PATH": f"{empty}:{first}"}
    spawned, popen = _spawn_error(["tool"], env), _popen_error(["tool"], env)
    assert (spawned.errno, spawned.filename) == (popen.errno, popen.filename)
    assert spawned.errno == errno.EACCES and spawned.filename == "tool"
    env = {"PATH": str(empty)}
    spawned, popen = _spawn_error(["tool"], env), _popen_error(["tool"], env)
    assert isinstance(spawned, FileNotFoundError) and spawned.errno == popen.errno


def test_what_cannot_be_executed_raises_as_popen_did(tmp_path: Path) -> None:
    _script(tmp_path / "no-shebang", "echo hi\n")
    open_before = _open_fds()
    for argv in ([str(tmp_path / "no-shebang")], [str(tmp_path / "missing")]):
        spawned, popen = _spawn_error(argv, {}), _popen_error(argv, {})
        assert (type(spawned), spawned.errno, spawned.filename) == (
            type(popen),
            popen.errno,
            popen.filename,
        )
    assert _spawn_error([str(tmp_path / "no-shebang")], {}).errno == errno.ENOEXEC
    assert _open_fds() == open_before  # a failed spawn closes both ends of its pipe


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_communicate_keeps_what_it_read_across_a_timeout(tmp_path: Path) -> None:
    script = tmp_path / "slow"
    gate = tmp_path / "gate"
    # Prints, then waits (bounded) for the test to open the gate, then prints again.
    _script(
        script,
        f"#!/bin/sh\nprintf 'one '\ni=0\nwhile [ ! -e {gate} ] && [ $i -lt 3000 ]; do\n"
        "  sleep 0.01; i=$((i + 1))\ndone\nprintf two\nexit 7\n",
    )
    with spawn([str(script)], {}, stderr="devnull") as child:
        assert child.communicate(0.05) is None
        assert child.returncode is None and child.poll() is None
        gate.touch()
        assert child.communicate(CHILD_TIMEOUT_S) == b"one two"
        assert child.returncode == 7
        assert child.communicate() == b"one two"  # again: the same answer


def test_kill_group_kills_the_whole_tree(tmp_path: Path) -> None:
    script = tmp_path / "tree"
    _script(script, "#!/bin/sh\nsleep 60 &\necho started\nsleep 60\n")
    started = time.monotonic()
    with spawn(
        [str(script)], {"PATH": os.environ.get("PATH", os.defpath)}, stderr="stdout"
    ) as child:
        assert child.stdout.readline() == b"started\n"
        kill_group(child.pid)
        # EOF comes only once the background sleep (holding the pipe) is dead too.
        assert child.communicate(CHILD_TIMEOUT_S) == b""
        assert child.returncode == -9
    assert time.monotonic() - started < CHILD_TIMEOUT_S
    kill_group(child.pid)  # gone already: fine


def test_leaving_the_with_block_reaps_the_child(tmp_path: Path) -> None:
    script = tmp_path / "quick"
    _script(script, "#!/bin/sh\nexit 3\n")
    with spawn([str(script)], {}, stderr="devnull") as child:
        pass
    assert isinstance(child, Child) and child.returncode == 3 and child.stdout.closed
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)  # reaped: no zombie left


def test_text_is_decoded_as_popen_s_text_mode() -> None:
    assert decode_text(b"a\r\nb\rc\n") == "a\nb\nc\n"
    assert decode_text("é".encode()) == "é"
    with pytest.raises(UnicodeDecodeError):
        decode_text(b"\xff")  # strict, as Popen's text mode
