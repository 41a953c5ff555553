"""Nomad allocations: list by job or evaluation, read one, stream a task's logs; mirrors
api/allocations.go and api/fs.go (the `Logs` half).

Wire shapes (nomad-api.md §3, §5): the list endpoints return `[AllocListStub]`;
`GET /v1/allocation/:id` the full allocation or 404 `alloc not found`;
`GET /v1/client/fs/logs/:id?task=&type=&follow=&offset=&origin=` a stream of JSON frames
(see `frames.py`). A followed log never ends by itself, even after the allocation stops
(issue #4663): callers watch the allocation and stop reading; `stream_logs` also ends
when no frame (not even a heartbeat) arrives within `idle_timeout`.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from nomadpaas.errors import NomadUnreachable
from nomadpaas.nomad.client import NomadClient
from nomadpaas.nomad.frames import FrameDecoder, StreamFrame
from nomadpaas.nomad.jobs import job_path

__all__ = ["TERMINAL_CLIENT_STATUSES", "Allocation", "Allocations", "TaskEvent", "TaskState"]

#: ClientStatus values after which an allocation never runs again.
TERMINAL_CLIENT_STATUSES = frozenset({"complete", "failed", "lost"})
#: Seconds without any frame before `stream_logs` gives up on a connection (Nomad sends
#: a heartbeat every second, so this only fires when the server stalls).
DEFAULT_IDLE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TaskEvent:
    """One entry of a task's event history (`Terminated`, `Driver Failure`, …)."""

    type: str
    message: str
    exit_code: int | None = None
    time_ns: int = 0

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> TaskEvent:
        details = data.get("Details") or {}
        code: Any = details.get("exit_code", data.get("ExitCode"))
        message = (
            data.get("DisplayMessage")
            or data.get("Message")
            or data.get("DriverError")
            or data.get("SetupError")
            or data.get("DownloadError")
            or ""
        )
        return cls(
            type=str(data.get("Type") or ""),
            message=str(message),
            exit_code=int(code) if code not in (None, "") else None,
            time_ns=int(data.get("Time") or 0),
        )


@dataclass(frozen=True)
class TaskState:
    """A task's `State` (pending|running|dead), `Failed` flag and events."""

    state: str
    failed: bool = False
    events: tuple[TaskEvent, ...] = ()

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> TaskState:
        return cls(
            state=str(data.get("State") or "pending"),
            failed=bool(data.get("Failed")),
            events=tuple(TaskEvent.from_wire(e) for e in data.get("Events") or ()),
        )

    @property
    def exit_code(self) -> int | None:
        """The exit code of the last `Terminated` event, if any."""
        for event in reversed(self.events):
            if event.type == "Terminated" and event.exit_code is not None:
                return event.exit_code
        return None


@dataclass(frozen=True)
class Allocation:
    """An allocation as the list and read endpoints describe it."""

    id: str
    name: str = ""
    job_id: str = ""
    eval_id: str = ""
    client_status: str = "pending"
    client_description: str = ""
    desired_status: str = "run"
    task_states: Mapping[str, TaskState] = field(default_factory=dict)
    modify_index: int = 0

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Allocation:
        return cls(
            id=str(data.get("ID") or ""),
            name=str(data.get("Name") or ""),
            job_id=str(data.get("JobID") or ""),
            eval_id=str(data.get("EvalID") or ""),
            client_status=str(data.get("ClientStatus") or "pending"),
            client_description=str(data.get("ClientDescription") or ""),
            desired_status=str(data.get("DesiredStatus") or "run"),
            task_states={
                name: TaskState.from_wire(state)
                for name, state in (data.get("TaskStates") or {}).items()
            },
            modify_index=int(data.get("ModifyIndex") or 0),
        )

    @property
    def terminal(self) -> bool:
        """Nomad's rule: desired stop/evict, or client complete/failed/lost."""
        return (
            self.desired_status in ("stop", "evict")
            or self.client_status in TERMINAL_CLIENT_STATUSES
        )


class Allocations:
    """Allocation reads and log streams on one Nomad."""

    def __init__(self, client: NomadClient) -> None:
        self.client = client

    def of_evaluation(self, eval_id: str) -> list[Allocation]:
        """The allocations an evaluation placed (empty while it is pending)."""
        data = self.client.get(f"/v1/evaluation/{eval_id}/allocations").data or []
        return [Allocation.from_wire(a) for a in data]

    def of_job(self, job_id: str) -> list[Allocation]:
        """The job's allocations (`[]` for an unknown job, as Nomad answers)."""
        data = self.client.get(job_path(job_id, "/allocations")).data or []
        return [Allocation.from_wire(a) for a in data]

    def get(self, alloc_id: str) -> Allocation:
        """The allocation; NomadNotFound when it does not exist."""
        return Allocation.from_wire(self.client.get(f"/v1/allocation/{alloc_id}").data or {})

    def watch_evaluation(
        self, eval_id: str, *, index: int, wait: float
    ) -> tuple[list[Allocation], int]:
        """`of_evaluation` as a blocking query: answers once the allocations' index passes
        `index` (at once for 0) or after `wait` seconds; with the index to pass next."""
        result = self.client.get(f"/v1/evaluation/{eval_id}/allocations", index=index, wait=wait)
        return [Allocation.from_wire(a) for a in result.data or []], result.index

    def watch(self, alloc_id: str, *, index: int, wait: float) -> tuple[Allocation, int]:
        """`get` as a blocking query: answers once the allocation changes past `index` (at
        once for 0) or after `wait` seconds; with the index to pass next."""
        result = self.client.get(f"/v1/allocation/{alloc_id}", index=index, wait=wait)
        return Allocation.from_wire(result.data or {}), result.index

    def stream_logs(
        self,
        alloc_id: str,
        task: str,
        log_type: str = "stdout",
        *,
        follow: bool = False,
        offset: int = 0,
        origin: str = "start",
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> Generator[StreamFrame, None, None]:
        """Frames of one task's log, heartbeats included, as they arrive.

        Ends when the server closes the stream (without `follow`: at the end of the
        newest file) or when nothing arrived for `idle_timeout` seconds. Raises the
        client's typed errors (404 before the task started: NomadNotFound).
        """
        params: dict[str, str | int] = {
            "namespace": self.client.namespace,
            "task": task,
            "type": log_type,
            "follow": "true" if follow else "false",
            "offset": offset,
            "origin": origin,
        }
        path = f"/v1/client/fs/logs/{alloc_id}"
        timeout = httpx.Timeout(self.client.timeout, read=idle_timeout)
        decoder = FrameDecoder()
        # The client's pool, for its base URL and token header; `request` would read
        # the whole body, and a followed log has no end.
        http = self.client._http
        try:
            with http.stream("GET", path, params=params, timeout=timeout) as response:
                if not response.is_success:
                    response.read()
                    raise self.client._error("GET", path, response)
                for chunk in response.iter_bytes():
                    yield from decoder.feed(chunk)
        except (httpx.ReadTimeout, httpx.RemoteProtocolError):
            # Idle, or the server dropped the stream mid-body (the task's logs were
            # removed, the agent restarted): the caller decides whether to reconnect.
            return
        except httpx.TransportError as exc:
            raise NomadUnreachable(
                f"Lost the log stream of allocation {alloc_id} from Nomad at "
                f"{self.client.address}: {exc!r}."
            ) from exc
