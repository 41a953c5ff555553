"""Watch a dispatched build: find its allocation, stream its stdout live, until it ends.

Once the task has started, the watcher follows its stdout (`follow=true`): each line
arrives as the agent writes it, so the task's "record stored" line is seen within
milliseconds. Nomad's followed log never ends by itself, even after the allocation stops
(issue #4663), but it sends a heartbeat frame every second: at each heartbeat the watcher
looks at the allocation, so a task that dies without printing its last line is noticed
within about a second, and the rest of its log is then read without `follow`. Before the
task starts (and whenever a stream ends early) the watcher waits on the allocation with
blocking queries (`?index=`: Nomad answers the moment it changes), never by polling.
"""

from __future__ import annotations

import codecs
import contextlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

from nomadpaas import jobspec
from nomadpaas.errors import TimedOut
from nomadpaas.models import Build
from nomadpaas.nomad.allocations import Allocation, Allocations, TaskState
from nomadpaas.nomad.client import NomadNotFound

__all__ = ["RESULT_PREFIX", "BuildWatcher", "LineSplitter", "ResultLine", "task_failure"]

#: Longest single blocking query while waiting for the allocation to be placed (seconds).
PLACEMENT_WAIT_S = 5.0
#: Pause between polls when the server answered a blocking query at once without a new
#: index (a server or fake that ignores `?index=`), so the loop never spins.
POLL_INTERVAL_S = 0.25
#: Longest single blocking query while waiting for the task to start (seconds).
START_WAIT_S = 5.0
#: Blocking-query wait after a followed stream ended early: short when it had brought
#: output (reconnect soon), longer when it brought nothing (a server that closes streams
#: at once is not spun on).
LOG_POLL_MIN_S = 0.05
LOG_POLL_MAX_S = 1.0
#: Seconds without a frame before a log read is abandoned (Nomad heartbeats each 1 s).
LOG_IDLE_TIMEOUT_S = 5.0
#: Bytes of stderr read when a build died without writing its record.
STDERR_TAIL_BYTES = 8 * 1024
#: How the build task's result line starts (slugbuilder/dispatched.py RESULT_PREFIX).
RESULT_PREFIX = "-----> Build result for the platform: "
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MD5 = re.compile(r"[0-9a-f]{32}")


class ResultLine:
    """Takes the build task's result line, `RESULT_PREFIX<token> <JSON>`, for `token`.

    The task prints it, with the token the platform put in the dispatch meta, once a
    succeeded build's slug is stored, just before it stores the record (its DONE line
    then says whether that worked): it holds what the platform needs of that record (no
    log tail), so the record need not be read back. A buildpack may print anything,
    but never sees the token: a line with another token or none, or whose JSON is not a
    succeeded build's result, is ordinary output (not taken).
    """

    def __init__(self, token: str) -> None:
        #: The token, sent to the task as the dispatch meta `result_token`.
        self.token = token
        #: The result once taken (None until then).
        self.result: dict[str, Any] | None = None

    def __call__(self, line: str) -> bool:
        if not line.startswith(RESULT_PREFIX):
            return False
        token, _, text = line[len(RESULT_PREFIX) :].partition(" ")
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            return False
        try:
            result = json.loads(text)
        except ValueError:
            return False
        if not _succeeded_result(result):
            return False
        self.result = result
        return True


def _succeeded_result(result: Any) -> bool:
    """Whether `result` is a succeeded build's result with the slug's digests."""
    if not isinstance(result, dict) or result.get("status") != "succeeded":
        return False
    slug = result.get("slug")
    return (
        isinstance(slug, dict)
        and isinstance(slug.get("sha256"), str)
        and _SHA256.fullmatch(slug["sha256"]) is not None
        and isinstance(slug.get("md5"), str)
        and _MD5.fullmatch(slug["md5"]) is not None
        and isinstance(slug.get("compressed_bytes"), int)
        and isinstance(slug.get("process_types") or {}, dict)
    )


class LineSplitter:
    """Bytes from the log stream → complete lines (UTF-8 split across frames is fine)."""

    def __init__(
        self,
        emit: Callable[[str], None],
        keep: int = 30,
        markers: frozenset[str] = frozenset(),
        hide: Callable[[str], bool] | None = None,
    ) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._emit = emit
        self.tail: list[str] = []
        self._keep = keep
        self._markers = markers
        #: Takes the lines meant for the platform, not the user: True when it took one
        #: (the line is then neither passed on nor kept in `tail`).
        self._hide = hide
        #: The last line equal to one of `markers` (None: none yet); never reset.
        self.last_marker: str | None = None
        self._new_marker: str | None = None  # one went by since the last take_marker()

    def take_marker(self) -> str | None:
        """The marker line that went by since the last call, if one did (the latest)."""
        marker, self._new_marker = self._new_marker, None
        return marker

    def feed(self, data: bytes) -> None:
        text = self._partial + self._decoder.decode(data)
        *lines, self._partial = text.split("\n")
        for line in lines:
            self._line(line.rstrip("\r"))

    def flush(self) -> None:
        rest = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        if rest:
            self._line(rest.rstrip("\r"))

    def _line(self, line: str) -> None:
        if self._hide is not None and self._hide(line):
            return
        self.tail = [*self.tail[-(self._keep - 1) :], line]
        if line in self._markers:
            self.last_marker = self._new_marker = line
        self._emit(line)


class BuildWatcher:
    """Finds the build's allocation and follows its log until it is terminal."""

    def __init__(
        self,
        allocations: Allocations,
        build: Build,
        deadline: float,
        on_line: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.allocations = allocations
        self.build = build
        self.deadline = deadline
        self.clock = clock
        self.sleep = sleep
        self.on_line = on_line

    def _check_deadline(self, alloc_id: str | None = None) -> None:
        if self.clock() < self.deadline:
            return
        where = f"job {self.build.job_id}" + (f", allocation {alloc_id}" if alloc_id else "")
        raise TimedOut(
            f"Stopped waiting for build {self.build.build_id} of {self.build.app}; it goes "
            f"on in Nomad ({where}).",
            hint=f"Watch it with `nomad alloc logs -f {alloc_id or '<alloc>'} build`, or "
            "push again with a longer --timeout.",
        )

    def _remaining(self, longest: float) -> float:
        return max(min(longest, self.deadline - self.clock()), 0.001)

    def _pace(self, started: float, changed: bool, wait: float) -> None:
        """Sleep out the rest of `wait` when a blocking query brought no change."""
        if not changed:
            rest = wait - (self.clock() - started)
            if rest > 0:
                self.sleep(rest)

    def allocation(self, eval_id: str) -> Allocation:
        """The allocation of the dispatched child (blocks until it is placed)."""
        index = 0
        for _ in range(1_000_000):  # bounded by the deadline
            started = self.clock()
            wait = self._remaining(PLACEMENT_WAIT_S)
            if eval_id:
                found, new_index = self.allocations.watch_evaluation(
                    eval_id, index=index, wait=wait
                )
            else:  # a deduplicated dispatch: Nomad gave no evaluation
                found, new_index = self.allocations.of_job(self.build.job_id or ""), index
            if found:
                return max(found, key=lambda a: a.modify_index)
            self._check_deadline()
            self._pace(started, new_index > index, min(wait, POLL_INTERVAL_S))
            index = new_index
        raise AssertionError("unreachable")  # pragma: no cover

    def follow(
        self,
        alloc_id: str,
        markers: frozenset[str] = frozenset(),
        finished: Callable[[str], bool] | None = None,
        hide: Callable[[str], bool] | None = None,
        *,
        placed: Allocation | None = None,
        on_started: Callable[[], None] | None = None,
    ) -> tuple[Allocation, LineSplitter]:
        """Pass each line of the task's stdout to `on_line` until the allocation ends.

        Or until the task prints one of `markers` and then `finished(marker)`, given the
        line, says the result is in (the build task prints a marker right after storing
        its record, and goes on to save the build cache, which nobody needs to wait for):
        the allocation returned is then the one last seen, maybe still running. `hide`:
        see `LineSplitter`. `placed`: the allocation as `allocation()` found it (its list
        stub carries its task states and ModifyIndex): the wait for the task to start
        begins from it instead of reading the allocation first. `on_started`: called once
        the task is seen started (or the allocation ended), before its log is read.
        """
        lines = LineSplitter(self.on_line, markers=markers, hide=hide)
        alloc, index = self._started(alloc_id, placed)
        if on_started is not None:
            on_started()
        offset = 0
        for _ in range(1_000_000):  # bounded by the deadline
            if alloc.terminal:
                self._read(alloc_id, offset, lines)
                lines.flush()
                return alloc, lines
            self._check_deadline(alloc_id)
            before = offset
            done, alloc, offset = self._follow(alloc_id, alloc, offset, lines, finished)
            if done:
                return alloc, lines
            # The stream ended early (idle, dropped, log not there yet): wait on the
            # allocation a little, then follow again from the bytes already received.
            wait = LOG_POLL_MIN_S if offset != before else LOG_POLL_MAX_S
            started = self.clock()
            alloc, new_index = self.allocations.watch(
                alloc_id, index=index, wait=self._remaining(wait)
            )
            self._pace(started, new_index > index, wait)
            index = new_index
        raise AssertionError("unreachable")  # pragma: no cover

    def _started(self, alloc_id: str, placed: Allocation | None) -> tuple[Allocation, int]:
        """The allocation once its task runs (its log exists) or it ended; with its index.

        Starting from `placed` (seen a moment ago), the first blocking query waits past
        its ModifyIndex; when it already shows the task started, no request is made."""
        index = 0
        if placed is not None and placed.id == alloc_id and placed.modify_index > 0:
            if _task_started(placed):
                return placed, placed.modify_index
            index = placed.modify_index
        for _ in range(1_000_000):  # bounded by the deadline
            started = self.clock()
            wait = self._remaining(START_WAIT_S)
            alloc, new_index = self.allocations.watch(alloc_id, index=index, wait=wait)
            if _task_started(alloc):
                return alloc, new_index
            self._check_deadline(alloc_id)
            self._pace(started, new_index > index, min(wait, POLL_INTERVAL_S))
            index = new_index
        raise AssertionError("unreachable")  # pragma: no cover

    def _follow(
        self,
        alloc_id: str,
        alloc: Allocation,
        offset: int,
        lines: LineSplitter,
        finished: Callable[[str], bool] | None,
    ) -> tuple[bool, Allocation, int]:
        """Follow the log from `offset`: (True, …) once a marker's result is in or the
        allocation ended (the rest of the log read); (False, …) if the stream ended."""
        with contextlib.suppress(NomadNotFound):  # the log is not there yet: caller waits
            stream = self.allocations.stream_logs(
                alloc_id, jobspec.BUILD_TASK, "stdout", follow=True, offset=offset,
                idle_timeout=LOG_IDLE_TIMEOUT_S,
            )  # fmt: skip
            with contextlib.closing(stream):
                for frame in stream:
                    if frame.data:
                        offset += len(frame.data)
                        lines.feed(frame.data)
                        marker = lines.take_marker()
                        # Not the task's own marker (finished says no): go on.
                        if marker is not None and finished is not None and finished(marker):
                            return True, alloc, offset
                    elif frame.is_heartbeat:
                        # Quiet for a second: did the task die without its last line?
                        alloc = self.allocations.get(alloc_id)
                        if alloc.terminal:
                            break
                    self._check_deadline(alloc_id)
        if not alloc.terminal:
            return False, alloc, offset
        offset = self._read(alloc_id, offset, lines)  # what the stream had not sent yet
        lines.flush()
        return True, alloc, offset

    def _read(self, alloc_id: str, offset: int, lines: LineSplitter) -> int:
        """Read the stdout written since `offset` (no `follow`); the new offset."""
        stream = self.allocations.stream_logs(
            alloc_id, jobspec.BUILD_TASK, "stdout", offset=offset, idle_timeout=LOG_IDLE_TIMEOUT_S
        )
        try:
            with contextlib.closing(stream):
                for frame in stream:
                    if frame.data:
                        offset += len(frame.data)
                        lines.feed(frame.data)
        except NomadNotFound:
            pass  # the task has not started yet, or never will: the caller re-checks
        return offset

    def stderr_tail(self, alloc_id: str) -> list[str]:
        """The last lines of the task's stderr (a crash before the record was written)."""
        data = b""
        with contextlib.suppress(NomadNotFound):
            stream = self.allocations.stream_logs(
                alloc_id,
                jobspec.BUILD_TASK,
                "stderr",
                offset=STDERR_TAIL_BYTES,
                origin="end",
                idle_timeout=LOG_IDLE_TIMEOUT_S,
            )
            with contextlib.closing(stream):
                data = b"".join(frame.data for frame in stream)
        return [line for line in data.decode(errors="replace").splitlines() if line.strip()][-15:]


def _task_started(alloc: Allocation) -> bool:
    """Whether the build task has started (its log exists) or the allocation ended."""
    state = alloc.task_states.get(jobspec.BUILD_TASK)
    return alloc.terminal or (state is not None and state.state != "pending")


def task_failure(alloc: Allocation, state: TaskState | None) -> str:
    """Why the task failed when it left no record: its last telling event."""
    if state is not None:
        for event in reversed(state.events):
            if event.type in ("Driver Failure", "Setup Failure", "Failed Artifact Download"):
                return f"{event.type}: {event.message}"
            if event.type == "Terminated":
                return f"the build task exited ({event.message or event.exit_code})"
            if event.type == "Killing":
                return f"the build task was killed ({event.message})"
    return f"the build allocation ended {alloc.client_status} ({alloc.client_description})"
