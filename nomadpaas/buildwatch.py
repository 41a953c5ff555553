"""Watch a dispatched build: find its allocation, stream its stdout live, until it ends.

Nomad's followed log never ends by itself, even after the allocation stops (issue
#4663), so the watcher re-reads the allocation between frames (Nomad sends a heartbeat
every second) and, once it is terminal, reads the rest of the log without `follow`
from the byte offset already received. A stream that stalls is reopened at that offset.
"""

from __future__ import annotations

import codecs
import contextlib
import time
from collections.abc import Callable

from nomadpaas import jobspec
from nomadpaas.errors import TimedOut
from nomadpaas.models import Build
from nomadpaas.nomad.allocations import Allocation, Allocations, TaskState
from nomadpaas.nomad.client import NomadNotFound

__all__ = ["BuildWatcher", "LineSplitter", "task_failure"]

#: Seconds between polls of the evaluation / allocation while waiting.
POLL_INTERVAL_S = 0.25
#: While following logs, re-read the allocation at most this often (seconds); frames come at
#: least once a second (heartbeats), so a finished build is noticed within ~1 s.
STATUS_CHECK_S = 0.25
#: Seconds without a frame before a followed log is reopened (Nomad heartbeats each 1 s).
LOG_IDLE_TIMEOUT_S = 5.0
#: Bytes of stderr read when a build died without writing its record.
STDERR_TAIL_BYTES = 8 * 1024


class LineSplitter:
    """Bytes from the log stream → complete lines (UTF-8 split across frames is fine)."""

    def __init__(self, emit: Callable[[str], None], keep: int = 30) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._emit = emit
        self.tail: list[str] = []
        self._keep = keep

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
        self.tail = [*self.tail[-(self._keep - 1) :], line]
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

    def allocation(self, eval_id: str) -> Allocation:
        """The allocation of the dispatched child (polls until it is placed)."""
        for _ in range(1_000_000):  # bounded by the deadline
            found = (
                self.allocations.of_evaluation(eval_id)
                if eval_id
                else self.allocations.of_job(self.build.job_id or "")
            )
            if found:
                return max(found, key=lambda a: a.modify_index)
            self._check_deadline()
            self.sleep(POLL_INTERVAL_S)
        raise AssertionError("unreachable")  # pragma: no cover

    def follow(self, alloc_id: str) -> tuple[Allocation, LineSplitter]:
        """Pass each line of the task's stdout to `on_line` until the allocation ends."""
        lines = LineSplitter(self.on_line)
        offset = 0
        for _ in range(1_000_000):  # bounded by the deadline
            alloc = self.allocations.get(alloc_id)
            if alloc.terminal:
                offset = self._read(alloc_id, offset, lines, follow=False)
                lines.flush()
                return alloc, lines
            self._check_deadline(alloc_id)
            state = alloc.task_states.get(jobspec.BUILD_TASK)
            if state is None or (state.state == "pending" and not state.events):
                self.sleep(POLL_INTERVAL_S)
                continue
            before = offset
            offset = self._read(alloc_id, offset, lines, follow=True)
            if offset == before:
                self.sleep(POLL_INTERVAL_S)  # nothing yet, or a stream that ended at once
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, alloc_id: str, offset: int, lines: LineSplitter, *, follow: bool) -> int:
        """Read stdout from `offset`; with `follow`, until the allocation is terminal."""
        stream = self.allocations.stream_logs(
            alloc_id,
            jobspec.BUILD_TASK,
            "stdout",
            follow=follow,
            offset=offset,
            idle_timeout=LOG_IDLE_TIMEOUT_S,
        )
        checked = self.clock()
        try:
            with contextlib.closing(stream):
                for frame in stream:
                    if frame.data:
                        offset += len(frame.data)
                        lines.feed(frame.data)
                    if follow and self.clock() - checked >= STATUS_CHECK_S:
                        checked = self.clock()
                        if self.allocations.get(alloc_id).terminal:
                            break
                        self._check_deadline(alloc_id)
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
