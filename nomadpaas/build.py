"""Platform-side build: pack the source, upload it, dispatch `nomadpaas-build`, follow it.

DESIGN.md §4 (push, up to "read the build record")::

    pack (sourcepack) → sha256 → upload sources/<app>/<sha>.tar.gz if absent
      → register `nomadpaas-build` if missing or different → dispatch with presigned URLs
      (+ ?idempotency_token; a source of at most 16 KiB also as the Payload, its upload
      then overlapping the dispatch) → find the child's allocation → stream its stdout live
      → the task prints that its record is stored (or the allocation ends)
      → a succeeded build's result from the task's result line (authenticated by the
        meta's random `result_token`), else read builds/<app>/<id>.json
      → Build (the slug promoted), or BuildFailed (3)

A source whose tarball fits Nomad's dispatch payload limit (16 KiB,
`jobspec.DISPATCH_PAYLOAD_MAX_BYTES`) also goes as the dispatch `Payload`, with its
sha256 as the meta `source_sha256`, when the build job takes one (`Payload = "optional"`
and a task `DispatchPayload.File`): the task builds from that file, once its digest
matches, without fetching `source_url`. Its upload to S3 (same key, same bytes, same
`source-exists` skip) then starts on the worker once the build's task is seen running
(while it starts, CPU is idle; detached: once the build is dispatched), and is joined
before the build's result is reported (so before any release is written); a
failed upload fails the build with the upload's own error. Larger sources are
uploaded before the dispatch, as above.

Events (`on_event`, one at a time): `packed`, [`warning`…], then
`upload`/`uploaded` or `source-exists`, `job-registered` or `job-current`, `dispatched`
(`payload`: whether the source went with it), `allocated`, `log`…, [`built`: the
task's result line came, before its record is stored], `finished`. With a
payload, `upload`/`uploaded` or `source-exists` come after `allocated` instead (the
upload starts once the task runs), from the worker as it goes: among the first `log`
lines, always before `finished` (detached: after `dispatched`).

The task stores its record as soon as the slug is up and saves the build cache after
that, so a push does not wait for the cache; the record, not the allocation's status,
says whether the build succeeded.

The result line (buildwatch.ResultLine) saves reading the record back and looking at
the staging slug: the slug's MD5 on it is the condition of the promoting copy. The task
prints it just before it stores its record, so the copy starts on it (once the source is
in S3) and overlaps that store; the build is reported only on the DONE line after the
store, and a failed store's DONE line fails it (the promoted copy is left: content-
addressed, a release may share it). Without the line (an older build task) the record
is read. Requests that do not depend on each other
overlap: the build job is read while the source uploads (with a payload: while the
worker signs the URLs and stages the config); the staging slug is looked at while the
record is read; inside `deferred_cleanup()` (push uses it) the staging slug's delete
runs while the caller writes the release, joined before the block ends (never left to
a daemon thread). A config staged for a dispatch that was not answered is deleted.

The build task receives presigned URLs only (no credentials). It uploads the slug to a
staging key, because the slug's digest is unknown until it is built; the platform then
copies it server-side to its content-addressed key `slugs/<app>/<sha256>.tar.gz`,
checking its ETag against the MD5 in the build record (`storage.promote`).

Errors: build failed → BuildFailed (3) with the failing step and the log tail; the wait
exceeded `timeout` → TimedOut (5; the build goes on); Nomad or S3 not answering →
NomadUnreachable / StorageUnreachable (6).

This module runs the build; its parts live beside it: `buildjob` (the build's IDs,
registering the job), `buildstage` (the source upload, the presigned URLs, the events),
`buildwatch` (following the allocation) and `buildresult` (the record, the promoted
slug, `BuildJobFailed`). Their public names are importable from here as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from pathlib import Path
from typing import Any

from nomadpaas import jobspec
from nomadpaas.buildjob import ensure_build_job, idempotency_token, new_build_id
from nomadpaas.buildresult import BuildJobFailed, read_build
from nomadpaas.buildresult import after_last as _after_last
from nomadpaas.buildresult import finish as _finish
from nomadpaas.buildresult import read_record as _read_record
from nomadpaas.buildstage import CONDITIONAL_PUT_MAX_BYTES as CONDITIONAL_PUT_MAX_BYTES
from nomadpaas.buildstage import PRESIGN_EXPIRY_S as PRESIGN_EXPIRY_S
from nomadpaas.buildstage import PROGRESS_STEP_BYTES as PROGRESS_STEP_BYTES
from nomadpaas.buildstage import EventCallback
from nomadpaas.buildstage import Events as _Events
from nomadpaas.buildstage import presigned_urls as _presigned_urls
from nomadpaas.buildstage import size_text as _size
from nomadpaas.buildstage import upload as _upload  # noqa: F401  (tests reach it here)
from nomadpaas.buildstage import upload_source as _upload_source
from nomadpaas.buildwatch import BuildWatcher, ResultLine
from nomadpaas.errors import NomadPaasError
from nomadpaas.models import Build
from nomadpaas.nomad.allocations import Allocations
from nomadpaas.nomad.client import NomadClient
from nomadpaas.nomad.jobs import Dispatched, Jobs
from nomadpaas.sourcepack import MAX_SOURCE_BYTES, pack_source
from nomadpaas.storage import Storage, build_record_key, cache_key, source_key
from nomadpaas.storage.base import ObjectInfo
from nomadpaas.storage.keys import validate_app, validate_key
from nomadpaas.storage.promote import deferred_cleanup, promote

__all__ = [
    "DEFAULT_STACK",
    "DEFAULT_TIMEOUT_S",
    "BuildJobFailed",
    "EventCallback",
    "deferred_cleanup",
    "ensure_build_job",
    "idempotency_token",
    "new_build_id",
    "read_build",
    "run_build",
]

#: The slug builder's stack name (slugbuilder.compile.DEFAULT_STACK), part of the cache key.
DEFAULT_STACK = "nomadpaas-1"
#: Default wait for a build after dispatch: the job's 20-minute run limit plus queueing.
DEFAULT_TIMEOUT_S = 30 * 60.0
#: What the build task prints right after storing a succeeded build's record (the task's
#: slugbuilder/dispatched.py DONE_LINES["succeeded"]).
SUCCEEDED_LINE = "-----> Build succeeded"
#: What the build task prints right after storing its record (the task's
#: slugbuilder/dispatched.py DONE_LINES): the record can be read then.
RECORD_STORED_LINES = frozenset({SUCCEEDED_LINE, "-----> Build failed"})


def run_build(
    nomad: NomadClient,
    storage: Storage,
    app: str,
    path: str | Path,
    *,
    on_event: EventCallback | None = None,
    timeout: float | None = None,
    detach: bool = False,
    build_id: str | None = None,
    config: Mapping[str, str] | None = None,
    commit: str | None = None,
    stack: str = DEFAULT_STACK,
    job: Mapping[str, Any] | None = None,
    max_source_bytes: int = MAX_SOURCE_BYTES,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Build:
    """Build `path` for `app` on Nomad; see the module docstring.

    Parameters:
        on_event: receives `BuildEvent`s (progress, live log lines).
        timeout: seconds to wait for the build after dispatch (default 30 min).
        detach: return right after the dispatch, with status `pending`.
        build_id: reuse an ID to retry a dispatch idempotently; new when None.
        config: the app's config vars, given to buildpacks (stored as a short-lived S3
            object readable through a presigned URL, never put in the job).
        job: the rendered build job (default `jobspec.render_build_job()`).
    """
    app = validate_app(app)
    events = _Events(on_event)
    build_id = build_id or new_build_id()
    record_key = build_record_key(app, build_id)
    staging_key = validate_key(f"slugs/{app}/staging/{build_id}.tar.gz")
    config_key = build_record_key(app, f"{build_id}.config") if config else None

    jobs = Jobs(nomad)
    # One worker for the whole build, started before the work it takes: a thread
    # spawned at a critical moment (the upload's start, the record's read) takes the
    # GIL from the caller for up to a switch interval (5 ms) while it starts.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nomadpaas-build") as pool:
        pool.submit(int)  # starts the worker now, while nothing is waiting on it

        def read_job() -> tuple[dict[str, Any], dict[str, Any] | None]:
            rendered = dict(job) if job is not None else jobspec.render_build_job(validate=False)
            return rendered, jobs.get(str(rendered["ID"]))

        def stage_config() -> None:
            """The app's config, where the task's presigned `config_url` reads it."""
            if config_key is not None:
                storage.put_bytes(
                    config_key,
                    json.dumps(dict(config or {})).encode(),
                    content_type="application/json",
                )

        def upload_beside() -> None:
            """Upload the source, then remove the scratch directory it read (on the
            worker: nothing is left to remove once the build's result is in)."""
            try:
                _upload_source(*upload)
            finally:
                scratch.cleanup()

        def prepare_bucket() -> None:
            """The bucket (a first push creates it), then the config in it."""
            storage.ensure_bucket()
            stage_config()

        # While the source is uploaded, the build job is rendered and read and the presigned
        # URLs are signed (nothing reaches Nomad before the source is packed and within its
        # size limit); the job is registered, if it must be, only once the source is up.
        # A source small enough to be the dispatch Payload is uploaded on the worker instead,
        # once it is dispatched, while this thread follows the build: the upload is joined
        # before the build's result is reported (`_joined`).
        scratch = tempfile.TemporaryDirectory(prefix="nomadpaas-push-")
        uploading: Future[None] | None = None
        prepared: Future[Any] | None = None
        dispatched: Dispatched | None = None
        payload: bytes | None = None
        try:
            packed = pack_source(
                Path(path), Path(scratch.name) / "source.tar.gz", max_bytes=max_source_bytes
            )
            events(
                "packed",
                f"Packed {packed.files} files ({_size(packed.uncompressed_bytes)}, "
                f"sha256 {packed.sha256[:12]})",
                files=packed.files,
                bytes=packed.compressed_bytes,
                sha256=packed.sha256,
                ignored=len(packed.ignored),
            )
            for warning in packed.warnings:
                events("warning", warning)
            src_key = source_key(app, packed.sha256)
            if packed.compressed_bytes <= jobspec.DISPATCH_PAYLOAD_MAX_BYTES:
                template = job if job is not None else jobspec.load_template("build")
                if jobspec.dispatch_payload_file(template) is not None:
                    payload = packed.path.read_bytes()
            signing = (
                storage, src_key, staging_key, record_key, cache_key(app, stack), config_key,
            )  # fmt: skip
            upload = (storage, src_key, packed.path, packed.compressed_bytes, events)
            if payload is None:
                job_read = pool.submit(read_job)
                urls = pool.submit(_presigned_urls, *signing)
                _upload_source(*upload)
                scratch.cleanup()
                signed = urls.result()
                rendered, existing_job = job_read.result()
                stage_config()
            else:
                # The task may write to the bucket at once (a build failing quickly stores
                # its record), so it must exist before the dispatch, upload or not (a first
                # push creates it), and so must its config. The worker signs the URLs (CPU
                # work, which holds the GIL), then makes sure of both, while this thread
                # reads the job: that read waits on the network, and lets the worker run.
                urls = pool.submit(_presigned_urls, *signing)
                prepared = pool.submit(prepare_bucket)
                rendered, existing_job = read_job()
                signed = urls.result()
                prepared.result()
            result = ResultLine(secrets.token_hex(16))
            meta = {"app": app, "build_id": build_id, **signed, "stack": stack}
            meta["result_token"] = result.token
            if payload is not None:
                meta[jobspec.SOURCE_SHA256_META] = packed.sha256
            if commit:
                meta["commit"] = commit

            if ensure_build_job(jobs, rendered, existing=existing_job):
                events("job-registered", f"Registered the {rendered['ID']} job")
            else:
                events("job-current", f"The {rendered['ID']} job is up to date")
            dispatched = jobs.dispatch(
                str(rendered["ID"]),
                meta,
                idempotency_token=idempotency_token(app, packed.sha256, build_id),
                payload=payload,
            )
            events(
                "dispatched",
                f"Build {build_id} dispatched as {dispatched.job_id}",
                job_id=dispatched.job_id,
                eval_id=dispatched.eval_id,
                deduplicated=dispatched.deduplicated,
                build_id=build_id,
                payload=payload is not None,
            )
            if payload is not None and detach:
                # Started once the dispatch is sent: its CPU work (botocore's) would hold
                # the GIL against the dispatch's; the task needs S3's copy of the source
                # only to build again later, not now. A followed build starts it once
                # its task runs (below).
                uploading = pool.submit(upload_beside)
        except BaseException:
            if dispatched is None and config_key is not None:
                # No task will read the config (the dispatch was not answered): it must
                # not stay in the bucket. Once the worker is done staging it.
                _settle(prepared)
                with contextlib.suppress(NomadPaasError):
                    storage.delete(config_key)
            if payload is not None and uploading is None:  # the source lands as before
                with contextlib.suppress(Exception):
                    _upload_source(*upload)
            _settle(uploading)  # the upload reads the scratch dir: it ends first
            scratch.cleanup()
            raise
        base = Build(
            app=app,
            build_id=build_id,
            status="pending",
            source_sha256=packed.sha256,
            source_key=src_key,
            job_id=dispatched.job_id,
            stack=stack,
            commit=commit,
        )
        if detach:
            _joined(uploading, storage, staging_key, scratch)
            return base

        deadline = clock() + (DEFAULT_TIMEOUT_S if timeout is None else timeout)
        watcher = BuildWatcher(
            Allocations(nomad), base, deadline, lambda line: events("log", line), clock, sleep
        )
        found: list[dict[str, Any]] = []
        staged: list[ObjectInfo] = []

        def upload_now() -> None:
            """Start the source's upload beside the build (once; with a payload only).
            Called when the task is seen running: its start (the interpreter's imports)
            leaves CPU idle, where placing and starting it do not."""
            nonlocal uploading
            if payload is not None and uploading is None:
                uploading = pool.submit(upload_beside)

        promoting: list[Future[str | None]] = []

        def promote_early(sha256: str, md5: str) -> str | None:
            """Promote once the source is in S3 (the worker's earlier job, if any: its
            upload beside the build); None when that upload failed (the build fails)."""
            if uploading is not None and uploading.exception() is not None:
                return None
            return promote(storage, staging_key, app, sha256, md5, look=False)

        def take(line: str) -> bool:
            """Hide the task's result line and start promoting the slug on it: the task
            stores its record meanwhile, and says on its DONE line whether that worked."""
            if not result(line):
                return False
            if not promoting and result.result is not None:
                slug = result.result["slug"]
                # On the worker, after its upload; in this context: promote may defer
                # its cleanup (`deferred_cleanup`).
                run = contextvars.copy_context().run
                promoting.append(pool.submit(run, promote_early, slug["sha256"], slug["md5"]))
                events(
                    "built",
                    f"Slug built ({_size(slug['compressed_bytes'])}, sha256 "
                    f"{slug['sha256'][:12]}); promoting it while the build record is stored",
                    sha256=slug["sha256"],
                    bytes=slug["compressed_bytes"],
                )
            return True

        def record_stored(marker: str) -> bool:
            if result.result is not None and marker == SUCCEEDED_LINE:
                return True  # the result line came before the record's store, now done
            # An older task (or no line): read the record, and look at the staging slug
            # meanwhile (promoting needs its ETag).
            staged.clear()
            look = pool.submit(storage.head, staging_key)
            record = _read_record(storage, record_key)
            with contextlib.suppress(NomadPaasError):  # absent (a failed build): no matter
                staged.append(look.result())
            if record is not None:
                found.append(record)
            return record is not None

        try:
            alloc = watcher.allocation(dispatched.eval_id)
            events("allocated", f"Running in allocation {alloc.id[:8]}", alloc_id=alloc.id)
            alloc, lines = watcher.follow(
                alloc.id, RECORD_STORED_LINES, record_stored, hide=take,
                placed=alloc, on_started=upload_now,
            )  # fmt: skip
        finally:
            upload_now()  # not started (the wait failed or ended early): the source lands
            if config_key is not None:
                with contextlib.suppress(NomadPaasError):
                    storage.delete(config_key)
            _settle(uploading)
            scratch.cleanup()
        # The source is in S3 before the build's result is reported (and so before any
        # release is written); a failed upload fails the build with its own error.
        _joined(uploading, storage, staging_key, scratch)
        promoted = promoting[0] if promoting else None
        if result.result is not None and lines.last_marker == SUCCEEDED_LINE:
            # No record to read, no look: the copy checks. The record's tail ends at the
            # marker; the stream may have brought more.
            tail = lines.tail[: _after_last(lines.tail, SUCCEEDED_LINE)]
            return _finish(
                storage, watcher, base, alloc, lines, {**result.result, "log_tail": tail},
                staging_key, events, look=False, promoted=promoted,
            )  # fmt: skip
        record = found[-1] if found else _read_record(storage, record_key)
        look = staged[-1] if found and staged else None
        return _finish(
            storage, watcher, base, alloc, lines, record, staging_key, events, look,
            promoted=promoted,
        )  # fmt: skip


def _settle(work: Future[Any] | None) -> None:
    """Wait for `work` to end, whatever its outcome (an upload's: `_joined` reports it)."""
    if work is not None:
        futures_wait([work])


def _joined(
    uploading: Future[None] | None,
    storage: Storage,
    staging_key: str,
    scratch: tempfile.TemporaryDirectory[str],
) -> None:
    """Wait for a concurrent source upload; raise its error (after removing the staging
    slug a build from the payload may have stored: no release comes of it)."""
    if uploading is None:
        return
    _settle(uploading)
    scratch.cleanup()
    error = uploading.exception()
    if error is not None:
        with contextlib.suppress(NomadPaasError):
            storage.delete(staging_key)
        raise error
