"""The python buildpack's node cache: interpreter facts and uv's interpreter info are kept
per build node (never a download), reused by other apps' cold builds, shared safely by
builds running at once, and asked again when the interpreter changes.

The buildpack runs directly (bin/compile of a copy of buildpacks/, as the slug builder
runs it: compile writes its `export` next to bin/; laid out as the slug builder lays out a
build: WORK/app, WORK/home, WORK/env) with `NOMADPAAS_BUILD_CACHE_DIR` set as the build
task has it. Installs are offline: the apps' requirements name local wheels.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPILE_TIMEOUT_S = 120.0
#: Where the buildpack keeps node facts under NOMADPAAS_BUILD_CACHE_DIR.
NODE_SUBDIR = Path(".buildpacks") / "python"
CACHE_HIT = "skipping the install (cache hit)"


def _uv_dir() -> Path | None:
    found = shutil.which("uv")
    if found:
        return Path(found).parent
    beside = Path(sys.executable).parent
    return beside if (beside / "uv").exists() else None


UV_DIR = _uv_dir()
pytestmark = pytest.mark.skipif(UV_DIR is None, reason="uv is not installed")
#: The interpreter running the tests, without links (a real binary).
REAL_PYTHON = Path(sys.executable).resolve()


def _wheel(directory: Path, name: str) -> None:
    """A minimal pure-Python wheel `name` 1.0 (one module saying its name)."""
    dist_info = f"{name}-1.0.dist-info"
    files = {
        f"{name}/__init__.py": f"NAME = {name!r}\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = hashlib.sha256(text.encode()).digest()
        b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{path},sha256={b64},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(directory / f"{name}-1.0-py3-none-any.whl", "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)


@pytest.fixture(scope="module")
def compile_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/compile of a copy of the repository's buildpacks."""
    copy = tmp_path_factory.mktemp("bp") / "buildpacks"
    shutil.copytree(REPO / "buildpacks", copy, ignore=shutil.ignore_patterns("export"))
    return copy / "python" / "bin" / "compile"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("wheels")
    for name in ("npt_alpha", "npt_beta"):
        _wheel(directory, name)
    return directory


def _app(wheels: Path, package: str | None, **extra: str) -> dict[str, str]:
    files = {"Procfile": "web: python -V\n", **extra}
    if package is not None:
        files["requirements.txt"] = f"--no-index\n--find-links {wheels}\n{package}\n"
    else:
        files.setdefault("runtime.txt", "python-3\n")
    return files


def _compile(
    script: Path,
    work: Path,
    files: Mapping[str, str],
    cache: Path,
    *,
    node_root: Path | str | None,
    python_dir: Path,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Start bin/compile on a fresh WORK/app holding `files`; `python_dir` (first on PATH)
    holds the `python3` the build uses."""
    if work.exists():
        shutil.rmtree(work)
    app = work / "app"
    for sub in ("app", "home", "env"):
        (work / sub).mkdir(parents=True)
    for name, text in files.items():
        path = app / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if name.startswith("bin/"):
            path.chmod(0o755)
    env = {
        "PATH": os.pathsep.join([str(python_dir), str(UV_DIR), "/usr/bin", "/bin"]),
        "HOME": str(work / "home"),
        "LANG": "C.UTF-8",
        "STACK": "nomadpaas-1",
        **(extra_env or {}),
    }
    if node_root is not None:
        env["NOMADPAAS_BUILD_CACHE_DIR"] = str(node_root)
    return subprocess.Popen(
        [str(script), str(app), str(cache), str(work / "env")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    """Wait for a started compile (killed with its group if it hangs); its output."""
    try:
        out, _ = proc.communicate(timeout=COMPILE_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, out
    return out


def _build(
    script: Path,
    work: Path,
    files: Mapping[str, str],
    cache: Path,
    *,
    node_root: Path | str | None,
    python_dir: Path,
    extra_env: Mapping[str, str] | None = None,
) -> str:
    """Run bin/compile to the end (see _compile); its output, after checking it succeeded."""
    proc = _compile(
        script, work, files, cache, node_root=node_root, python_dir=python_dir,
        extra_env=extra_env,
    )  # fmt: skip
    return _finish(proc)


@pytest.fixture
def python_dir(tmp_path: Path) -> Path:
    """A PATH dir whose python3 is a link to the real interpreter (as a venv's is)."""
    directory = tmp_path / "pybin"
    directory.mkdir()
    (directory / "python3").symlink_to(REAL_PYTHON)
    return directory


def _site_packages(work: Path) -> set[str]:
    found = next((work / "app" / ".venv" / "lib").glob("python*/site-packages"))
    return {p.name for p in found.iterdir() if p.name.startswith("npt_")}


def _entries(node: Path) -> dict[str, tuple[int, int]]:
    """uv's interpreter-info entries on the node: inode and mtime (uv replaces an entry
    each time it starts the interpreter to ask)."""
    return {
        str(p.relative_to(node)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (node / "uv").rglob("*.msgpack")
    }


def test_another_apps_cold_build_reuses_the_nodes_interpreter_facts(
    compile_script: Path, tmp_path: Path, wheels: Path, python_dir: Path
) -> None:
    root = tmp_path / "build-cache"
    node = root / NODE_SUBDIR
    trace = {"RUST_LOG": "uv=trace"}
    first = _build(
        compile_script, tmp_path / "w1", _app(wheels, "npt-alpha"), tmp_path / "c1",
        node_root=root, python_dir=python_dir,
    )  # fmt: skip
    assert "+ npt-alpha==1.0" in first
    entries = _entries(node)
    assert len(entries) >= 2  # the interpreter, and the venv seen through a slot
    probes = {p.name: p.stat().st_ino for p in (node / "probe").iterdir()}
    assert any("python3" in name for name in probes) and any("uv" in name for name in probes)

    # Another app, cold (empty CACHE_DIR), in another build dir.
    second = _build(
        compile_script, tmp_path / "w2", _app(wheels, "npt-beta"), tmp_path / "c2",
        node_root=root, python_dir=python_dir, extra_env=trace,
    )  # fmt: skip
    assert "+ npt-beta==1.0" in second and CACHE_HIT not in second
    assert _site_packages(tmp_path / "w2") == {"npt_beta", "npt_beta-1.0.dist-info"}
    # uv started no Python to ask: neither the interpreter nor the new venv's.
    assert "Detecting markers" not in second and "Querying interpreter" not in second
    skipped = [line for line in second.splitlines() if "skipping query of: " in line]
    assert any(line.endswith(f"{python_dir}/python3") for line in skipped), second
    assert any(str(node / "venv-slots") in line for line in skipped), second
    assert _entries(node) == entries
    # Our own questions (python's version and path, uv's version) were not asked again.
    assert {p.name: p.stat().st_ino for p in (node / "probe").iterdir()} == probes
    # The slot's path is nowhere in the venv (it was only the way uv saw it).
    for path in (tmp_path / "w2" / "app" / ".venv").rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert str(root).encode() not in path.read_bytes(), path


def test_a_changed_interpreter_is_asked_again(
    compile_script: Path, tmp_path: Path, wheels: Path, python_dir: Path
) -> None:
    other = Path("/usr/bin/python3")
    if not other.exists() or other.resolve() == REAL_PYTHON:
        pytest.skip("needs a second interpreter at /usr/bin/python3")
    other_version = subprocess.run(
        [str(other), "-I", "-S", "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    real_version = f"{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}"
    if other_version == real_version:
        pytest.skip("the second interpreter has the same version")
    root = tmp_path / "build-cache"
    files = _app(wheels, "npt-alpha")
    out = _build(
        compile_script,
        tmp_path / "w1",
        files,
        tmp_path / "c1",
        node_root=root,
        python_dir=python_dir,
    )
    assert f"using Python {real_version} ({python_dir}/python3)" in out
    # The same path now leads to another interpreter.
    (python_dir / "python3").unlink()
    (python_dir / "python3").symlink_to(other.resolve())
    out = _build(
        compile_script,
        tmp_path / "w2",
        files,
        tmp_path / "c2",
        node_root=root,
        python_dir=python_dir,
    )
    assert f"using Python {other_version} ({python_dir}/python3)" in out
    cfg = (tmp_path / "w2" / "app" / ".venv" / "pyvenv.cfg").read_text()
    assert f"version_info = {other_version}" in cfg, cfg  # uv did not use the stale info
    assert "npt_alpha" in _site_packages(tmp_path / "w2")
    # The app's own cache notices too: its key holds the interpreter's version.
    out = _build(
        compile_script,
        tmp_path / "w3",
        files,
        tmp_path / "c1",
        node_root=root,
        python_dir=python_dir,
    )
    assert "the cached install is discarded" in out and CACHE_HIT not in out


def test_a_replaced_python3_is_asked_again(
    compile_script: Path, tmp_path: Path, wheels: Path, python_dir: Path
) -> None:
    root = tmp_path / "build-cache"
    files = _app(wheels, None)
    out = _build(
        compile_script,
        tmp_path / "w1",
        files,
        tmp_path / "c1",
        node_root=root,
        python_dir=python_dir,
    )
    assert f"({python_dir}/python3)" in out and "using Python 3.99.0" not in out
    # A python3 that is itself the interpreter (it names itself), of another version.
    fake = python_dir / "python3"
    fake.unlink()
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "-I -S" ]; then echo 3.99.0; echo "$0"; exit 0; fi\n'
        f'exec {REAL_PYTHON} "$@"\n'
    )
    fake.chmod(0o755)
    out = _build(
        compile_script,
        tmp_path / "w2",
        files,
        tmp_path / "c2",
        node_root=root,
        python_dir=python_dir,
    )
    assert f"using Python 3.99.0 ({python_dir}/python3)" in out, out
    # Replaced again, keeping the mtime to the ns (a Nix store, normalised image layers).
    stamp = fake.stat().st_mtime_ns
    fake.unlink()
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "-I -S" ]; then echo 3.98.0; echo "$0"; exit 0; fi\n'
        f'exec {REAL_PYTHON} "$@"\n'
    )
    fake.chmod(0o755)
    os.utime(fake, ns=(stamp, stamp))
    out = _build(
        compile_script,
        tmp_path / "w3",
        files,
        tmp_path / "c3",
        node_root=root,
        python_dir=python_dir,
    )
    assert f"using Python 3.98.0 ({python_dir}/python3)" in out, out


def test_a_shims_answer_is_never_remembered(
    compile_script: Path, tmp_path: Path, wheels: Path, python_dir: Path
) -> None:
    """A shim (pyenv's) picks an interpreter by its environment: it is asked every time."""
    root = tmp_path / "build-cache"
    version = tmp_path / "version"
    shim = python_dir / "python3"
    shim.unlink()
    shim.write_text(
        "#!/bin/sh\n"
        f'if [ "$1 $2" = "-I -S" ]; then cat {version}; echo {REAL_PYTHON}; exit 0; fi\n'
        f'exec {REAL_PYTHON} "$@"\n'
    )
    shim.chmod(0o755)
    files = _app(wheels, None)
    version.write_text("3.98.0\n")
    out = _build(
        compile_script,
        tmp_path / "w1",
        files,
        tmp_path / "c1",
        node_root=root,
        python_dir=python_dir,
    )
    assert f"using Python 3.98.0 ({REAL_PYTHON})" in out
    version.write_text("3.97.0\n")  # the shim itself is unchanged
    out = _build(
        compile_script,
        tmp_path / "w2",
        files,
        tmp_path / "c2",
        node_root=root,
        python_dir=python_dir,
    )
    assert f"using Python 3.97.0 ({REAL_PYTHON})" in out


def test_concurrent_builds_share_the_node_cache(
    compile_script: Path, tmp_path: Path, wheels: Path, python_dir: Path
) -> None:
    root = tmp_path / "build-cache"
    node = root / NODE_SUBDIR
    # Two builds on a fresh node at once: both ask, both publish what uv learnt.
    procs = [
        _compile(
            compile_script, tmp_path / f"w{name}", _app(wheels, f"npt-{name}"),
            tmp_path / f"c{name}", node_root=root, python_dir=python_dir,
        )
        for name in ("alpha", "beta")
    ]  # fmt: skip
    for proc in procs:
        _finish(proc)
    assert _site_packages(tmp_path / "walpha") == {"npt_alpha", "npt_alpha-1.0.dist-info"}
    assert _site_packages(tmp_path / "wbeta") == {"npt_beta", "npt_beta-1.0.dist-info"}
    assert _entries(node) and not list((node / "uv").glob(".new.*"))

    # Slot 0 is busy (another build holds it): two more builds use other slots, and each
    # installs into its own venv.
    slots = node / "venv-slots"
    fd = os.open(slots / "0.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        busy_target = os.readlink(slots / "0")
        procs = [
            _compile(
                compile_script, tmp_path / f"x{name}", _app(wheels, f"npt-{name}"),
                tmp_path / f"d{name}", node_root=root, python_dir=python_dir,
            )
            for name in ("alpha", "beta")
        ]  # fmt: skip
        for proc in procs:
            _finish(proc)
        assert os.readlink(slots / "0") == busy_target  # untouched while held
    finally:
        os.close(fd)
    assert (slots / "1").is_symlink()
    assert _site_packages(tmp_path / "xalpha") == {"npt_alpha", "npt_alpha-1.0.dist-info"}
    assert _site_packages(tmp_path / "xbeta") == {"npt_beta", "npt_beta-1.0.dist-info"}


@pytest.mark.parametrize("value", [None, "${meta.nomadpaas.build_cache_dir}", "relative"])
def test_without_a_node_cache_the_facts_stay_in_the_apps_cache(
    compile_script: Path, tmp_path: Path, wheels: Path, python_dir: Path, value: str | None
) -> None:
    cache = tmp_path / "cache"
    files = _app(wheels, "npt-alpha")
    out = _build(
        compile_script, tmp_path / "w1", files, cache, node_root=value, python_dir=python_dir
    )
    assert "+ npt-alpha==1.0" in out
    node = cache / "python" / "node"
    assert any(p.name.endswith("python3") for p in (node / "probe").iterdir())
    assert list((node / "uv").rglob("*.msgpack"))
    assert not (tmp_path / "w1" / "app" / "relative").exists()
    # The cache is packed and uploaded: no link may point outside it.
    for path in cache.rglob("*"):
        if path.is_symlink():
            assert not os.readlink(path).startswith("/"), path
    # The app's cache goes through S3, which keeps whole seconds: still the same facts.
    for path in cache.rglob("*"):
        if path.is_file() and not path.is_symlink():
            whole = path.stat().st_mtime_ns // 10**9 * 10**9
            os.utime(path, ns=(whole, whole))
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cache.rglob("*") if p.is_file()}
    warm = _build(
        compile_script, tmp_path / "w2", files, cache, node_root=value, python_dir=python_dir
    )
    assert CACHE_HIT in warm
    # A warm build changes nothing in the cache (else the build task would save it again).
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cache.rglob("*") if p.is_file()}
    assert after == before


def test_a_node_cache_that_cannot_be_written_only_costs_speed(
    compile_script: Path, tmp_path: Path, wheels: Path, python_dir: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")  # nothing can be made below a file, whoever runs the test
    files = _app(wheels, "npt-alpha")
    for n in (1, 2):
        out = _build(
            compile_script, tmp_path / f"w{n}", files, tmp_path / f"c{n}",
            node_root=blocker / "build-cache", python_dir=python_dir,
        )  # fmt: skip
        assert "+ npt-alpha==1.0" in out and " !     " not in out
        assert "Not a directory" not in out  # quietly: nothing to act on in the build log
        assert _site_packages(tmp_path / f"w{n}") == {"npt_alpha", "npt_alpha-1.0.dist-info"}


def test_a_warm_build_leaves_the_restored_venv_as_cached(
    compile_script: Path, tmp_path: Path, wheels: Path, python_dir: Path
) -> None:
    root = tmp_path / "build-cache"
    cache = tmp_path / "cache"
    files = _app(wheels, "npt-alpha")
    _build(compile_script, tmp_path / "w1", files, cache, node_root=root, python_dir=python_dir)
    links = cache / "python" / "slug" / ".venv" / ".nomadpaas-absolute-links"
    assert links.read_text().startswith("bin/python\t/")
    warm = _build(
        compile_script, tmp_path / "w2", files, cache, node_root=root, python_dir=python_dir
    )
    assert CACHE_HIT in warm
    venv = tmp_path / "w2" / "app" / ".venv"
    # Every file is the cache's own (hard links, none rewritten), absolute links stripped.
    assert (venv / ".nomadpaas-absolute-links").stat().st_ino == links.stat().st_ino
    assert not (venv / "bin" / "python").is_symlink()
    profile = (tmp_path / "w2" / "app" / ".profile.d" / "python.sh").read_text()
    assert f"{python_dir}/python3" in profile and ".nomadpaas-absolute-links" in profile
    # A post_compile hook runs the venv's python: its links are back for it, then gone.
    hook = "#!/bin/sh\n.venv/bin/python -c 'import npt_alpha as m; print(\"hook saw\", m.NAME)'\n"
    hooked = _build(
        compile_script, tmp_path / "w3", {**files, "bin/post_compile": hook}, cache,
        node_root=root, python_dir=python_dir,
    )  # fmt: skip
    assert "hook saw npt_alpha" in hooked and CACHE_HIT in hooked
    assert not (tmp_path / "w3" / "app" / ".venv" / "bin" / "python").is_symlink()
    assert links.read_text().startswith("bin/python\t/")


def test_the_slug_builder_gives_builds_the_node_cache(
    build: Callable[..., Any], tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build task's NOMADPAAS_BUILD_CACHE_DIR reaches the buildpack (compile.py)."""
    root = tmp_path / "build-cache"
    monkeypatch.setenv("NOMADPAAS_BUILD_CACHE_DIR", str(root))
    src = tmp_path / "src"
    src.mkdir()
    for name, text in _app(wheels, "npt-alpha").items():
        (src / name).write_text(text)
    done = build(src)
    assert done.result is not None and "+ npt-alpha==1.0" in done.output
    node = root / NODE_SUBDIR
    assert any(p.name.endswith("python3") for p in (node / "probe").iterdir())
    assert _entries(node)
