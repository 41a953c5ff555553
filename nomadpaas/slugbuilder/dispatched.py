"""The dispatched build task: read the dispatch meta, build, write the build record.

`python -m nomadpaas.slugbuilder task` runs this inside the `nomadpaas-build` job. Its
inputs are the dispatch meta, which Nomad exposes as `NOMAD_META_<key>` (nomad-api.md
§1.7); every URL is presigned by the platform for exactly one object:

    app, build_id                 who and which build (for the record and REQUEST_ID)
    source_url                    GET  sources/<app>/<sha256>.tar.gz
    slug_url                      PUT  the slug
    metadata_url                  PUT  builds/<app>/<build-id>.json (the build record)
    cache_url, cache_put_url      GET/PUT cache/<app>/<stack>.tar.gz   (optional)
    config_url                    GET  the app's config vars as JSON    (optional)
    stack, commit                 (optional)
    result_token                  authenticates the result line (optional; RESULT_PREFIX)
    source_sha256                 the source's digest, sent with a dispatch payload (optional)

A source small enough (16 KiB) also comes as the dispatch payload, which Nomad writes to
`$NOMAD_TASK_DIR/source.tar.gz` (payload.py): the build uses it, once its sha256 is
`source_sha256` (a mismatch fails the build), instead of fetching `source_url`; without
that file it fetches `source_url`.

and from the task's env, `NOMADPAAS_BUILD_CACHE_DIR` (the node meta
`nomadpaas.build_cache_dir`): the node-local tier of the build cache (localcache.py);
unset, empty or unresolved means S3 only.

The build log goes to stdout line by line (the platform follows it live). Whatever
happens, a build record is written to `metadata_url`: status, timings (start and end
to the millisecond, `duration_s`, and `timings`: seconds per phase, `startup` being the
process's age when the build began: interpreter start and imports), the failing step,
the error, the last lines of the log and, on success, the slug metadata. Exit codes:
0 built, 3 build failed, 2 the meta is incomplete.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import deque
from collections.abc import Mapping

from nomadpaas.errors import NomadPaasError
from nomadpaas.slugbuilder.compile import DEFAULT_STACK, CompileFailed, SlugMetadata
from nomadpaas.slugbuilder.http_transfer import HttpTransfer
from nomadpaas.slugbuilder.localcache import LocalCache
from nomadpaas.slugbuilder.payload import payload_path
from nomadpaas.slugbuilder.scratch import scratch_dir
from nomadpaas.slugbuilder.task import BuildTask, run_build_task
from nomadpaas.slugbuilder.timings import Timings, process_age

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    from typing import Any

    from nomadpaas.slugbuilder.early import EarlyRequests
    from nomadpaas.slugbuilder.task import Transfer

__all__ = ["DONE_LINES", "RECORD_FORMAT", "RESULT_PREFIX", "main", "read_meta"]

REQUIRED = ("app", "build_id", "source_url", "slug_url", "metadata_url")
OPTIONAL = (
    "cache_url", "cache_put_url", "config_url", "stack", "commit", "result_token",
    "source_sha256",
)  # fmt: skip
#: Version of the build record's JSON layout.
RECORD_FORMAT = 1
#: Lines of build output kept in the record.
TAIL_LINES = 30
STEP_PREFIX = "-----> "
#: Printed right after the build record is stored: the platform reads the record when it
#: sees one of these (nomadpaas/build.py holds the same lines), without waiting for the
#: task to exit (the cache is saved after a success).
DONE_LINES = {"succeeded": "-----> Build succeeded", "failed": "-----> Build failed"}
#: A succeeded build's result line, printed just before its record is stored (and so
#: before its DONE line) when the meta has a `result_token`: `<prefix><token> <compact
#: JSON>` holding what the platform needs of the record, so it need not read it back and
#: can promote the slug while the record is stored. The token (never given to
#: buildpacks: their env holds no NOMAD_META_*) tells it from a line a buildpack printed
#: (nomadpaas/build.py).
RESULT_PREFIX = "-----> Build result for the platform: "
#: The record's fields on the result line (the slug's: RESULT_SLUG_FIELDS).
RESULT_FIELDS = ("status", "started_at", "finished_at", "duration_s", "step")
RESULT_SLUG_FIELDS = (
    "sha256", "md5", "compressed_bytes", "process_types", "buildpack_description", "warnings",
)  # fmt: skip


def read_meta(environ: Mapping[str, str]) -> dict[str, str]:
    """Dispatch meta from `NOMAD_META_<key>` (as written, else upper-cased); unset optional
    keys are empty strings in Nomad, and are left out here."""
    meta: dict[str, str] = {}
    for key in (*REQUIRED, *OPTIONAL):
        value = environ.get(f"NOMAD_META_{key}") or environ.get(f"NOMAD_META_{key.upper()}")
        if value:
            meta[key] = value
    return meta


class _Log:
    """Prints each line at once and remembers the tail and the current step."""

    def __init__(self) -> None:
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.step = ""

    def __call__(self, line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        self.tail.append(line)
        if line.startswith(STEP_PREFIX):
            self.step = line[len(STEP_PREFIX) :]


def _now() -> str:
    """UTC now as ISO 8601 to the millisecond (``datetime.isoformat`` without `datetime`)."""
    seconds, ns = divmod(time.time_ns(), 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{ns // 1_000_000:03d}+00:00"


def _lower_priority() -> int | None:
    """Run this thread, and the threads it starts from now on, only on otherwise idle CPU
    (SCHED_IDLE); the policy it had, to restore, or None when it could not be changed.

    Once the build's result is stored the platform reads it and promotes the slug, on
    the same machine's CPUs as often as not; the cache saved meanwhile only serves the
    next build, so it must not slow that down.
    """
    try:
        previous = os.sched_getscheduler(0)
        if previous not in (os.SCHED_OTHER, os.SCHED_BATCH):
            return None  # real-time or already idle: leave it as the operator set it
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or not allowed
        return None
    return previous


def _restore_priority(previous: int | None) -> None:
    if previous is None:
        return
    try:
        os.sched_setscheduler(0, previous, os.sched_param(0))
    except OSError:  # an unprivileged process may not leave SCHED_IDLE: it is exiting anyway
        return


def run(
    meta: Mapping[str, str],
    transfer: Transfer,
    work_dir: str | os.PathLike[str],
    *,
    startup_s: float | None = None,
    local: LocalCache | None = None,
    idle_after_result: bool = False,
    source_file: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """Build per `meta`; return (exit code, build record). The record is also stored.

    `startup_s`: how long the process took to get here (recorded as the `startup` phase).
    `local`: the node's build cache slots (None: S3 only).
    `idle_after_result`: once a success is recorded, save the cache on idle CPU only
    (SCHED_IDLE; the calling thread's policy is restored before returning).
    `source_file`: the dispatch payload (payload.py), built from instead of `source_url`.
    """
    log = _Log()
    started, clock = _now(), time.monotonic()
    timings = Timings()
    if startup_s is not None:
        timings.add("startup", startup_s)
    record: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "app": meta.get("app"),
        "build_id": meta.get("build_id"),
        "stack": meta.get("stack") or DEFAULT_STACK,
        "commit": meta.get("commit"),
        "started_at": started,
        "status": "failed",
        "step": None,
        "error": None,
        "slug": None,
    }
    work_dir = os.fspath(work_dir)
    record_file = os.path.join(work_dir, "build-record.json")

    def store_record() -> None:
        """Write the record as it stands (raises OSError when it cannot be stored)."""
        record.update(log_tail=list(log.tail), timings=timings.to_dict())
        with open(record_file, "w") as f:
            f.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
        transfer.store(record_file, meta["metadata_url"])

    def finish(status: str) -> None:
        record.update(
            status=status,
            step=log.step or None,
            finished_at=_now(),
            duration_s=round(time.monotonic() - clock, 3),
        )
        token = meta.get("result_token")
        if status == "succeeded" and token:
            # Before the record's store: the platform promotes the slug meanwhile, and
            # reports the build only on the DONE line below (a failed store prints the
            # failed one instead). Not in the log tail.
            sys.stdout.write(_result_line(token, record))
            sys.stdout.flush()
        store_record()
        log(DONE_LINES[status])  # after the store: the platform reads the record on it

    announced = False
    lowered: int | None = None
    try:
        with timings.phase("fetch_config"):
            config = _fetch_config(meta.get("config_url"), transfer, work_dir)
        task = BuildTask(
            source_url=meta["source_url"],
            slug_url=meta["slug_url"],
            cache_url=meta.get("cache_url"),
            cache_put_url=meta.get("cache_put_url"),
            config=config,
            stack=meta.get("stack") or DEFAULT_STACK,
            commit=meta.get("commit"),
            build_id=meta.get("build_id"),
            source_file=source_file,
            source_sha256=meta.get("source_sha256"),
        )

        def on_slug_stored(metadata: SlugMetadata) -> None:
            nonlocal announced, lowered
            record["slug"] = metadata.to_dict()
            finish("succeeded")
            announced = True
            if idle_after_result:
                lowered = _lower_priority()

        run_build_task(
            task,
            transfer,
            os.path.join(work_dir, "build"),
            log=log,
            timings=timings,
            local=local,
            app=meta.get("app"),
            on_slug_stored=on_slug_stored,
        )
    except (CompileFailed, NomadPaasError) as exc:
        if not announced:
            _fail(log, record, exc.message, exc.hint)
    except OSError as exc:  # a transfer, or the disk
        if not announced:
            _fail(log, record, f"Moving build files failed: {exc}", None)
    finally:
        _restore_priority(lowered)
    if announced:
        # Succeeded and said so; the cache was saved since: the record gets its timings.
        try:
            store_record()
        except OSError as exc:
            log(f" !     Warning: the build record's final timings were not stored: {exc}")
        return 0, record
    try:
        finish("failed")
    except OSError as exc:
        log(f" !     The build record could not be stored: {exc}")
    return 3, record


def _result_line(token: str, record: dict[str, Any]) -> str:
    """The result line (with its newline) of a succeeded build's stored `record`."""
    slug = record.get("slug") or {}
    result = {key: record.get(key) for key in RESULT_FIELDS}
    result["slug"] = {key: slug.get(key) for key in RESULT_SLUG_FIELDS}
    return f"{RESULT_PREFIX}{token} {json.dumps(result, separators=(',', ':'))}\n"


def _fail(log: _Log, record: dict[str, Any], message: str, hint: str | None) -> None:
    log(f" !     Build failed: {message}")
    if hint:
        log(f" !     {hint}")
    # No slug: one may be set by a success whose record could not be stored.
    record.update(slug=None, error={"message": message, "hint": hint})


def _fetch_config(url: str | None, transfer: Transfer, work_dir: str) -> dict[str, str]:
    if not url:
        return {}
    path = os.path.join(work_dir, "config.json")
    if not transfer.fetch(url, path):
        raise NomadPaasError("The app's config vars for this build were not found")
    try:
        with open(path) as f:
            loaded = json.loads(f.read())
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # config vars are often secrets
    if not isinstance(loaded, dict):
        raise NomadPaasError("The app's config vars for this build are not a JSON object")
    return {str(k): str(v) for k, v in loaded.items()}


def main(
    argv: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    early: EarlyRequests | None = None,
) -> int:
    """Entry of `python -m nomadpaas.slugbuilder task` (no arguments: meta from env).

    `early`: the GETs `__main__` sent before importing this module (early.py); the
    build reads their answers instead of asking again.
    """
    env = os.environ if environ is None else environ
    meta = read_meta(env)
    missing = [key for key in REQUIRED if key not in meta]
    if (argv or missing) and early is not None:
        early.close()
    if argv:
        sys.stdout.write(f" !     `task` takes no arguments (got {' '.join(argv)})\n")
        return 2
    if missing:
        sys.stdout.write(
            " !     Missing dispatch meta: "
            + ", ".join(f"NOMAD_META_{k}" for k in missing)
            + " (dispatch the nomadpaas-build job)\n"
        )
        return 2
    startup_s = process_age()  # interpreter start and imports, before any build work
    scratch_parent = env.get("NOMAD_TASK_DIR") or None
    with (
        scratch_dir("nomadpaas-build-", scratch_parent) as scratch,
        HttpTransfer(early=early) as transfer,
    ):
        local = LocalCache.from_env(env.get("NOMADPAAS_BUILD_CACHE_DIR"))
        code, _record = run(
            meta, transfer, scratch, startup_s=startup_s, local=local, idle_after_result=True,
            source_file=payload_path(env),
        )  # fmt: skip
    return code
