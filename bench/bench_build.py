"""What a build through the platform costs against doing the same install by hand.

Run: .venv/bin/python bench/bench_build.py   (about 1-2 minutes; loopback plus PyPI)

The bench starts the embedded agent and S3 server on random loopback ports (killed,
with their tasks, at the end) and pushes examples/flask through `Platform.push`: pack,
upload, dispatch `nomadpaas-build`, uv install, slug, upload, release. Same run, same
machine, interleaved rounds, medians:

- cold push (a new app: empty build cache) vs `python3 -m venv` + `pip install -r`
  (goal: ≤ 0.5×) and vs `uv venv` + `uv pip install -r` (goal: ≤ 1.5×);
- warm push after a code-only change vs the cold push (goal: ≥ 3× faster);
- the slug's compressed size vs the installed tree it holds.

It also prints where a push's time goes, per phase (medians, cold and warm): the
platform's side from the push's events (pack, upload, register + dispatch, placement;
a source small enough to ride in the dispatch payload is uploaded beside the build, and
that row is shown apart,
task start, task end → platform done, release), the build task's side from the
`timings` of its build record (startup = the task process's age when the build began:
interpreter start and imports; then fetch source and cache, extract the cache, detect,
compile, release, pack and upload slug, pack and upload cache).

What is cached, to be fair: nothing downloaded is. The platform's cold build has no
build cache and the buildpack gives uv an empty scratch cache; the manual uv run gets an
empty UV_CACHE_DIR, pip gets --no-cache-dir. pip reads no config file and no
PIP_FIND_LINKS, so both installers fetch from PyPI only. The `uv` binary and the
interpreter are on the machine for all three. The warm push reuses the installed venv
from the app's build cache (that is what the cache is for). The agent is started as
`nomadpaas up` starts it, with the node meta that gives builds a node-local cache tier:
the warm push finds its cache on the node (a 304 from S3, no download, no extraction).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from testsupport import ServerProcess, agent_process, s3_process

from nomadpaas import Platform, Settings
from nomadpaas.agent.drivers.rawexec.driver import kill_orphaned_tasks
from nomadpaas.models import BuildEvent, PushResult
from nomadpaas.storage import build_record_key
from nomadpaas.storage.s3 import S3Storage

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "flask"
ROUNDS = 5
#: One build may take this long on a loaded 2-core machine before the bench gives up.
BUILD_TIMEOUT_S = 180.0
#: A manual install may take this long.
INSTALL_TIMEOUT_S = 180.0


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(argv: list[str], env: dict[str, str], cwd: Path) -> None:
    subprocess.run(
        argv, env=env, cwd=cwd, check=True, capture_output=True, timeout=INSTALL_TIMEOUT_S
    )


def manual_env(scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        UV_CACHE_DIR=str(scratch / "uv-cache"),
        UV_LINK_MODE="copy",
        UV_NO_PROGRESS="1",
    )
    return env


def by_pip(work: Path) -> None:
    """What a developer would do without a platform: venv + pip, no cache."""
    env = manual_env(work)
    run([sys.executable, "-m", "venv", "venv"], env, work)
    run(
        ["venv/bin/python", "-m", "pip", "install", "--no-cache-dir", "-r", "requirements.txt"],
        env,
        work,
    )


def by_uv(work: Path) -> None:
    """The same install with uv (what the buildpack runs), from an empty cache."""
    env = manual_env(work)
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    run([uv, "venv", "--quiet", "--python", sys.executable, "venv"], env, work)
    run([uv, "pip", "install", "--quiet", "--python", "venv", "-r", "requirements.txt"], env, work)


def tree_bytes(tar_path: Path) -> int:
    with tarfile.open(tar_path) as tar:
        return sum(m.size for m in tar.getmembers() if m.isfile())


#: Platform-side phases, in order, as (name, event that ends it); a phase starts where
#: the previous one ended (`push` = the call itself).
PLATFORM_PHASES = (
    ("pack source", "packed"),
    ("upload source", "uploaded"),
    ("register + dispatch", "dispatched"),
    ("placement (dispatch -> alloc seen)", "allocated"),
)
#: The source's upload when the source rode in the dispatch (off the push's path).
UPLOAD_BESIDE = "  (beside the build: upload source)"
#: The build task's phases that run one after the other (keys of the record's `timings`;
#: `startup` ends before the record's `started_at`).
TASK_PHASES = (
    "fetch_config", "fetch_source", "fetch_cache", "restore_cache", "stage_source", "detect",
    "compile", "release", "pack_slug", "upload_slug",
)  # fmt: skip
#: After the result is out (the push's result line) the task saves the cache and makes the
#: next warm build's spare clone of it (localcache.py): off the path.
AFTER_RESULT_PHASES = ("pack_cache", "upload_cache", "spare_cache")


class PhaseClock:
    """Wall-clock time of each push event (the task's record speaks wall-clock too)."""

    def __init__(self) -> None:
        self.start = time.time()
        self.at: dict[str, float] = {}

    def __call__(self, event: BuildEvent) -> None:
        kind = "uploaded" if event.kind == "source-exists" else event.kind
        self.at.setdefault(kind, time.time())

    def phases(self, record: dict[str, object], end: float) -> dict[str, float]:
        """Seconds per phase of one push (platform + task), from its events and record."""
        out: dict[str, float] = {}
        last = self.start
        # A small source rides in the dispatch payload and goes to S3 beside the build:
        # then its upload is not on the path, and is shown apart.
        beside = "uploaded" in self.at and self.at["uploaded"] > self.at.get("dispatched", 0)
        for name, kind in PLATFORM_PHASES:
            if kind == "uploaded" and beside:
                continue
            if kind in self.at:
                out[name] = self.at[kind] - last
                last = self.at[kind]
        if beside:
            out[UPLOAD_BESIDE] = self.at["uploaded"] - self.at["dispatched"]
        started = _wall(record.get("started_at"))
        finished = _wall(record.get("finished_at"))
        timings = record.get("timings")
        if started is not None and finished is not None and isinstance(timings, dict):
            # The record's started_at is taken after the task's startup: subtract it.
            startup = float(timings.get("startup", 0.0))
            out["task scheduled + spawned (agent)"] = started - startup - last
            out["  task: startup (interpreter + imports)"] = startup
            for name in TASK_PHASES:  # a phase that did not run took 0 s (a cold cache)
                out[f"  task: {name}"] = float(timings.get(name, 0.0))
            accounted = sum(float(timings.get(n, 0.0)) for n in TASK_PHASES)
            # Setup and hand-offs between the phases (the result is timed at `finished_at`).
            out["  task: between the phases"] = finished - started - accounted
            for name in AFTER_RESULT_PHASES:
                out[f"    (then, off the push's path: {name})"] = float(timings.get(name, 0.0))
            done = self.at.get("finished", end)
            out["task's result -> build done (notice, promote)"] = done - finished
            out["release"] = end - done
        return out


def _wall(value: object) -> float | None:
    return datetime.fromisoformat(value).timestamp() if isinstance(value, str) else None


def print_phases(cold: list[dict[str, float]], warm: list[dict[str, float]]) -> None:
    names = list(dict.fromkeys(n for run in cold + warm for n in run))
    print("where the time goes, medians (s):                        cold     warm")
    for name in names:
        c = [r[name] for r in cold if name in r]
        w = [r[name] for r in warm if name in r]
        cs = f"{statistics.median(c):8.3f}" if c else "       -"
        ws = f"{statistics.median(w):8.3f}" if w else "       -"
        print(f"  {name:<52}{cs} {ws}")


def ratio_line(name: str, value: float, goal: str, ok: bool) -> str:
    return f"  {name:<46} {value:6.2f}x   goal {goal:<8} {'ok' if ok else 'MISSED'}"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-build-") as d:
        tmp = Path(d)
        # As `nomadpaas up` starts it: the node keeps build caches (node meta).
        meta = f"nomadpaas.build_cache_dir={tmp / 'build-cache'}"
        agent: ServerProcess = agent_process(
            tmp / "agent", log_path=tmp / "agent.log", extra_args=["-meta", meta]
        )
        s3 = s3_process(tmp / "s3", log_path=tmp / "s3.log")
        try:
            s3.start()
            agent.start()
            storage = S3Storage(
                s3.url, "nomadpaas", region="us-east-1", access_key_id="k", secret_access_key="s"
            )
            settings = Settings(nomad_addr=agent.url, s3_endpoint=s3.url, home=tmp / "home")
            with Platform(settings, storage=storage) as platform:
                measure(platform, tmp)
        finally:
            agent.kill()
            kill_orphaned_tasks(str(agent.data_dir))
            s3.kill()


def measure(platform: Platform, tmp: Path) -> None:
    cold: list[float] = []
    warm: list[float] = []
    pip: list[float] = []
    uv: list[float] = []
    task_cold: list[float] = []
    task_warm: list[float] = []
    phases_cold: list[dict[str, float]] = []
    phases_warm: list[dict[str, float]] = []
    slug_bytes = installed = 0
    pending_cold: list[tuple[PhaseClock, PushResult, float]] = []
    pending_warm: list[tuple[PhaseClock, PushResult, float]] = []
    # A throwaway push registers the build job and warms the OS file cache for everyone.
    platform.create_app("warmup")
    platform.push("warmup", copy_example(tmp / "warmup"), timeout=BUILD_TIMEOUT_S)
    for i in range(ROUNDS):
        app = f"bench{i}"
        source = copy_example(tmp / app)
        platform.create_app(app)
        clock = PhaseClock()
        start = time.perf_counter()
        result = platform.push(app, source, timeout=BUILD_TIMEOUT_S, on_event=clock)
        cold.append(time.perf_counter() - start)
        # The record is read at the end: the task rewrites it once the cache is saved.
        pending_cold.append((clock, result, time.time()))

        for fn, out in ((by_pip, pip), (by_uv, uv)):
            work = tmp / f"{fn.__name__}{i}"
            shutil.copytree(EXAMPLE, work)
            out.append(timed(lambda fn=fn, work=work: fn(work)))  # type: ignore[misc]

        app_py = source / "app.py"
        app_py.write_text(app_py.read_text() + f"\n# code-only change {i}\n")
        clock = PhaseClock()
        start = time.perf_counter()
        rebuilt = platform.push(app, source, timeout=BUILD_TIMEOUT_S, on_event=clock)
        warm.append(time.perf_counter() - start)
        pending_warm.append((clock, rebuilt, time.time()))
        assert rebuilt.status == "released", rebuilt.status

        if i == 0 and result.build is not None and result.build.slug_key:
            slug = tmp / "slug.tar.gz"
            platform.storage.get_file(result.build.slug_key, slug)
            slug_bytes = slug.stat().st_size
            installed = tree_bytes(slug)

    time.sleep(1.0)  # the last task saves its cache after the push returned
    for pending, phases, task in (
        (pending_cold, phases_cold, task_cold),
        (pending_warm, phases_warm, task_warm),
    ):
        for clock, pushed, end in pending:
            phases.append(clock.phases(build_record(platform, pushed), end))
            task.append(task_seconds(pushed))
    c, w, p, u = (statistics.median(x) for x in (cold, warm, pip, uv))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"flask example, {ROUNDS} rounds, medians (s); load average now {load} "
        f"on {os.cpu_count()} CPUs:"
    )
    print(f"  platform cold push (new app, empty caches)   {c:6.2f}   {fmt(cold)}")
    print(f"  platform warm push (code-only change)        {w:6.2f}   {fmt(warm)}")
    print(f"  by hand: python -m venv + pip install        {p:6.2f}   {fmt(pip)}")
    print(f"  by hand: uv venv + uv pip install            {u:6.2f}   {fmt(uv)}")
    tc, tw = statistics.median(task_cold), statistics.median(task_warm)
    print(f"  of which the build task itself, cold / warm  {tc:6.2f} / {tw:.2f}")
    print(f"  platform around it (pack, upload, dispatch, follow, promote, release)  {c - tc:.2f}")
    print(
        "  caches: none for cold pushes and manual installs (empty build cache, empty uv\n"
        "  cache, pip --no-cache-dir, PyPI only); the warm push restores the app's build cache"
    )
    print_phases(phases_cold, phases_warm)
    print("ratios (same run):")
    print(ratio_line("cold push / (venv + pip install)", c / p, "<= 0.5", c / p <= 0.5))
    print(ratio_line("cold push / (uv venv + uv pip install)", c / u, "<= 1.5", c / u <= 1.5))
    print(ratio_line("cold push / warm push (speed-up)", c / w, ">= 3", c / w >= 3))
    if slug_bytes:
        print(
            f"  slug {slug_bytes / 1024**2:.1f} MiB compressed for a "
            f"{installed / 1024**2:.1f} MiB installed tree "
            f"({slug_bytes / installed:.2f}x)"
        )


def build_record(platform: Platform, result: PushResult) -> dict[str, object]:
    """The build task's record of this push (its timings), or {} when there is none."""
    if result.build is None:
        return {}
    raw = platform.storage.get_bytes(build_record_key(result.app, result.build.build_id))
    record = json.loads(raw)
    return record if isinstance(record, dict) else {}


def task_seconds(result: PushResult) -> float:
    """The build task's own run time, from its build record."""
    return float(result.build.duration_s or 0.0) if result.build else 0.0


def copy_example(dest: Path) -> Path:
    shutil.copytree(EXAMPLE, dest)
    return dest


def fmt(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"


if __name__ == "__main__":
    main()
