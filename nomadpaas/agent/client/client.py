"""The node: watches its allocations, runs one alloc runner per allocation, reports
their status, re-attaches to running tasks after an agent restart; mirrors client/client.go.

Threads:
- *watch*: a blocking query loop on `ServerRPC.get_client_allocs` (the server's
  `watch_client_allocs` when it has one: woken only when an allocation of the node is
  placed, removed or changed in what the client acts on, as Nomad's client skips
  allocations whose AllocModifyIndex it has seen); new allocations get a runner, changed
  ones are handed to theirs (DesiredStatus stop → kill), allocations the server forgot
  (garbage-collected) are destroyed (tasks killed, alloc dir removed).
- *sync*: batches the runners' updates into `ServerRPC.update_allocs`, at most every
  `SYNC_INTERVAL_S`, at once when a ClientStatus changes (Nomad's allocSync, 200 ms).
  "At once" waits a little to coalesce, longer when the last write was slow: every write
  makes the server refresh the job and wakes this node's watch loop, so a thousand
  allocations starting together must share writes instead of paying for one each. A
  burst that is over (no update for twice its mean gap) goes without waiting further.

`start()` first restores every allocation saved in the client state (client/state.py):
task runners with a saved driver handle re-attach (`recover_task`) instead of starting a
second copy. `shutdown()` (agent SIGTERM) leaves every task running; only the server
stopping an allocation, or `destroy_all()`, kills tasks.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from nomadpaas.agent.client.allocrunner.alloc_runner import AllocRunner, AllocRunnerConfig
from nomadpaas.agent.client.allocrunner.taskrunner.interfaces import TaskHook
from nomadpaas.agent.client.allocrunner.taskrunner.restarts import RestartTracker
from nomadpaas.agent.client.allocrunner.taskrunner.task_config import (
    DEFAULT_MAX_KILL_TIMEOUT_NS,
)
from nomadpaas.agent.client.allocrunner.taskrunner.task_runner_hooks import build_task_hooks
from nomadpaas.agent.client.getter.getter import GetterConfig
from nomadpaas.agent.client.interfaces import ServerRPC
from nomadpaas.agent.client.logmon.logmon import LogMon
from nomadpaas.agent.client.state import ClientStateDB
from nomadpaas.agent.drivers.base import Driver
from nomadpaas.agent.drivers.rawexec.driver import RawExecDriver
from nomadpaas.agent.structs.alloc import client_terminal, server_terminal

log = logging.getLogger("nomadpaas.agent.client")

SYNC_INTERVAL_S = 0.2  # Nomad's allocSyncIntv: updates are batched over this window
# An urgent update (a ClientStatus change) waits only this long, so status changes of
# allocations starting together still share one update_allocs call (and an allocation
# that is pending now and running a moment later is written once): 50 ms, not 20, took
# a 1,000-allocation start from about 70 writes to 45 and 1,500 row updates to 1,350.
URGENT_COALESCE_S = 0.05
# ... or this many times as long as the previous update_allocs took (capped by the sync
# interval), so the server spends at most about a fifth of its time on our writes.
URGENT_COALESCE_COST_FACTOR = 4.0
# A burst of updates is over once none came for twice its mean gap, and at least this
# long: the batch goes then instead of at the end of the window, which would only delay
# what the burst's last allocations report (a 1,000-allocation start: ~90 ms).
BURST_QUIET_S = 0.015
WATCH_WAIT_S = 30.0  # blocking-query wait; shutdown interrupts the store anyway
RETRY_BACKOFF_S = 1.0  # after a failed RPC, before trying again
# After an unchanged answer that came long before its wait was up (a server shutting down
# answers every blocking query at once), before asking again.
EARLY_ANSWER_BACKOFF_S = 0.1
SHUTDOWN_JOIN_S = 5.0
# Nomad's ClientDescription for a complete allocation (client_status_from_task_states).
ALL_COMPLETED = "All tasks have completed"
# Terminal allocations the server no longer lists are kept (logs stay readable) up to this
# many, oldest destroyed first (Nomad: client gc_max_allocs).
GC_MAX_TERMINAL_ALLOCS = 50


@dataclass
class ClientConfig:
    data_dir: Path
    node: Mapping[str, Any]  # the fingerprinted node: ID, Name, Datacenter, Attributes, …
    max_kill_timeout_ns: int = DEFAULT_MAX_KILL_TIMEOUT_NS
    getter_config: GetterConfig | None = None
    host_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    sync_interval_s: float = SYNC_INTERVAL_S
    watch_wait_s: float = WATCH_WAIT_S
    # Tests pin the restart jitter: (alloc, task) -> RestartTracker.
    tracker_factory: Callable[[dict[str, Any], dict[str, Any]], RestartTracker] | None = None
    # Alloc runner hooks of later issues (group services, health): runner -> hooks.
    runner_hooks: Callable[[AllocRunner], list[Any]] | None = None
    # Task runner hooks of later issues (task services), appended to each task's list.
    task_hooks: Callable[[], list[TaskHook]] | None = None


def _stopped_before_start(alloc_id: str) -> dict[str, Any]:
    """The update for an allocation stopped before this client ever started it."""
    return {"ID": alloc_id, "ClientStatus": "complete", "ClientDescription": ALL_COMPLETED}


def _change_key(alloc: Mapping[str, Any]) -> tuple[Any, ...]:
    """What the server changes about an allocation (not the client's own updates).

    Compared with `==` only (DesiredTransition is a mapping): every wake of the watch loop
    computes it for all of the node's allocations, so it must stay cheap. The server's
    watch index (schema.WATCH_NODE_ALLOCS) watches the same fields: keep them in step."""
    job = alloc.get("Job") or {}
    return (
        alloc.get("AllocModifyIndex"),
        alloc.get("DesiredStatus"),
        alloc.get("DesiredTransition"),
        job.get("JobModifyIndex"),
        job.get("Version"),
    )


def _mutable(alloc: Mapping[str, Any]) -> dict[str, Any]:
    """The allocation as a plain dict of its own; the values in it (the embedded `Job`,
    the resources, the metrics) stay the server's read-only rows, shared with the server
    and, where the plan shared them, by every allocation of that job version instead of
    one copy each (about 12 MB less for 1,000 allocations of one job, the `Job` alone:
    bench/bench_agent_allocs.py). Nothing in the client changes an allocation in place:
    a runner replaces its whole allocation on an update, so no deep copy is needed.

    Only made for new or changed allocations: a wake of the watch loop hands over all of
    the node's allocations, and most of them have not changed."""
    return dict(alloc)


@runtime_checkable
class WatchingServerRPC(ServerRPC, Protocol):
    """A ServerRPC that also offers the node's watch (the agent's NodeRPC; test fakes may
    not): `get_client_allocs` blocking until an allocation of the node is placed,
    removed, or changed in what `_change_key` covers, not on every commit."""

    def watch_client_allocs(
        self, node_id: str, min_index: int, timeout_s: float
    ) -> tuple[list[dict[str, Any]], int]: ...


class Client:
    def __init__(
        self,
        config: ClientConfig,
        rpc: ServerRPC,
        driver: Driver | None = None,
        logmon: LogMon | None = None,
    ) -> None:
        self.config = config
        self.rpc = rpc
        self.node_id = str(config.node["ID"])
        self.driver: Driver = driver if driver is not None else RawExecDriver()
        self.logmon = logmon if logmon is not None else LogMon()
        self._owns_logmon = logmon is None
        self._base_task_hooks = build_task_hooks(self.logmon, config.getter_config)
        self.state_db = ClientStateDB(config.data_dir)
        self._lock = threading.Lock()
        self._runners: dict[str, AllocRunner] = {}
        self._seen: dict[str, tuple[Any, ...]] = {}  # alloc ID -> _change_key last run
        self._pending: dict[str, dict[str, Any]] = {}
        # Arrivals since the last batch was taken: (first, last, count), for _wait_for_batch.
        self._burst: tuple[float, float, int] = (0.0, 0.0, 0)
        self._sync_wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.last_index = 0

    # -- queries ----------------------------------------------------------------------

    def runner(self, alloc_id: str) -> AllocRunner | None:
        with self._lock:
            return self._runners.get(alloc_id)

    def runners(self) -> list[AllocRunner]:
        with self._lock:
            return list(self._runners.values())

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Restore saved allocations, then start watching and syncing."""
        self.restore()
        for target, name in ((self._watch_loop, "client-watch"), (self._sync_loop, "client-sync")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def restore(self) -> None:
        """Re-create runners for every allocation in the client state (agent restart)."""
        for saved in self.state_db.all_allocs():
            alloc_id = str(saved.alloc["ID"])
            try:
                runner = self._new_runner(saved.alloc, restored=saved)
            except Exception:
                log.exception("alloc %s: restore failed; dropping its state", alloc_id)
                self.state_db.delete_alloc(alloc_id)
                continue
            with self._lock:
                self._runners[alloc_id] = runner
                self._seen[alloc_id] = _change_key(saved.alloc)
            runner.run()
            log.info("alloc %s: restored", alloc_id)

    def shutdown(self) -> None:
        """Agent exit: stop our threads and flush updates; every task keeps running."""
        self._stop.set()
        self._sync_wake.set()
        runners = self.runners()
        for runner in runners:
            runner.shutdown(wait=False)  # signal all first: they wind down in parallel
        for runner in runners:
            runner.shutdown()
        for t in self._threads:
            if t.name == "client-sync":
                t.join(SHUTDOWN_JOIN_S)
        self._flush()
        if self._owns_logmon:
            self.logmon.close()

    def collect(self, alloc_id: str) -> bool:
        """GC one terminal allocation (alloc dir, state); False if unknown or still live."""
        with self._lock:
            runner = self._runners.get(alloc_id)
            if runner is None or not runner.is_done():
                return False
            del self._runners[alloc_id]
        runner.destroy()
        return True

    def collect_all(self) -> None:
        """GC every terminal allocation (`/v1/client/gc`)."""
        for runner in self.runners():
            if runner.is_done():
                self.collect(runner.id)

    def destroy_all(self) -> None:
        """Kill every allocation's tasks and remove them (tests, `-dev` teardown)."""
        for runner in self.runners():
            runner.destroy()
        with self._lock:
            self._runners.clear()

    # -- watch ------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        # The server's cheaper query when it has one: it wakes us only when something we
        # act on changed, not on every commit (our own status updates among them).
        rpc = self.rpc
        fetch = (
            rpc.watch_client_allocs if isinstance(rpc, WatchingServerRPC) else rpc.get_client_allocs
        )
        index = 0
        while not self._stop.is_set():
            asked = time.monotonic()
            try:
                allocs, new_index = fetch(self.node_id, index, self.config.watch_wait_s)
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("client: get_client_allocs failed: %s", exc)
                self._stop.wait(RETRY_BACKOFF_S)
                continue
            if self._stop.is_set():
                return
            if index and new_index == index:
                # Nothing changed. An answer long before the wait ran out means the server
                # is answering at once (shutting down): wait here instead of spinning.
                if time.monotonic() - asked < self.config.watch_wait_s / 2:
                    self._stop.wait(EARLY_ANSWER_BACKOFF_S)
                continue
            try:
                self.reconcile(allocs)
            except Exception:
                log.exception("client: applying allocation changes failed")
            index = max(new_index, 1) if new_index >= index else 0  # index went back: resync
            self.last_index = index

    def reconcile(self, allocs: list[dict[str, Any]]) -> None:
        """Run new allocations, update changed ones, destroy the ones the server forgot."""
        present: set[str] = set()
        # One pass under one lock finds what needs work: usually a few allocations of many.
        todo: list[tuple[dict[str, Any], AllocRunner | None, bool]] = []
        with self._lock:
            runners, seen = self._runners, self._seen
            for raw in allocs:
                alloc_id = str(raw["ID"])
                present.add(alloc_id)
                key = _change_key(raw)
                changed = seen.get(alloc_id) != key
                seen[alloc_id] = key
                runner = runners.get(alloc_id)
                if runner is None or changed:
                    todo.append((raw, runner, changed))
        for raw, runner, changed in todo:
            alloc_id = str(raw["ID"])
            if runner is None:
                if client_terminal(raw):
                    continue  # never ran here, nothing to stop
                if server_terminal(raw):
                    # Stopped before it ever ran here: nothing to kill, but the server must
                    # hear that it is done, or it stays `pending` (job status, GC) forever.
                    if changed:
                        self._queue_update(_stopped_before_start(alloc_id), urgent=True)
                    continue
                runner = self._new_runner(_mutable(raw))
                with self._lock:
                    self._runners[alloc_id] = runner
                runner.run()
            elif changed:
                runner.update(_mutable(raw))
        with self._lock:
            missing = [r for alloc_id, r in self._runners.items() if alloc_id not in present]
            # Running allocations the server forgot must die; finished ones are kept for
            # their logs until there are too many (client GC).
            gone = [r for r in missing if not r.is_done()]
            kept = [r for r in missing if r.is_done()]
            gone += kept[: max(0, len(kept) - GC_MAX_TERMINAL_ALLOCS)]
            for r in gone:
                self._runners.pop(r.id, None)
                self._seen.pop(r.id, None)
        for r in gone:
            threading.Thread(target=r.destroy, name=f"destroy-{r.id[:8]}", daemon=True).start()

    def _task_hooks(self) -> list[TaskHook]:
        """A task runner's ordered hook list. The built-in hooks keep no per-task state
        (each phase gets the task in its request), so every task shares one instance of
        each; the list itself and the extra hooks (task services) are fresh per task."""
        extra = self.config.task_hooks() if self.config.task_hooks is not None else []
        return [*self._base_task_hooks, *extra]

    def _new_runner(self, alloc: dict[str, Any], restored: Any = None) -> AllocRunner:
        return AllocRunner(
            AllocRunnerConfig(
                alloc=alloc,
                data_dir=str(self.config.data_dir),
                driver=self.driver,
                state_db=self.state_db,
                node=self.config.node,
                updater=self._queue_update,
                task_hooks=self._task_hooks,
                max_kill_timeout_ns=self.config.max_kill_timeout_ns,
                host_env=self.config.host_env,
                restored=restored,
                tracker_factory=self.config.tracker_factory,
                extra_hooks=self.config.runner_hooks,
            )
        )

    # -- sync -------------------------------------------------------------------------

    def _queue_update(self, update: dict[str, Any], urgent: bool) -> None:
        now = time.monotonic()
        with self._lock:
            self._pending[str(update["ID"])] = update
            first, _, count = self._burst
            self._burst = (first if count else now, now, count + 1)
        # A set Event stays set until the sync loop takes the batch: during a burst of
        # starts most updates find it set, and set() would take its lock for nothing.
        if urgent and not self._sync_wake.is_set():
            self._sync_wake.set()

    def _sync_loop(self) -> None:
        last_write_s = 0.0
        last_end = 0.0
        while not self._stop.is_set():
            if self._sync_wake.wait(self.config.sync_interval_s):
                # At most one urgent sync per window, counted from the end of the last
                # one: an update after a quiet spell goes at once, one in a burst waits
                # only for the rest of the window (not a whole window after it came).
                coalesce_s = max(URGENT_COALESCE_S, URGENT_COALESCE_COST_FACTOR * last_write_s)
                self._wait_for_batch(last_end + min(coalesce_s, self.config.sync_interval_s))
            self._sync_wake.clear()
            started = time.monotonic()
            if not self._flush():
                self._stop.wait(RETRY_BACKOFF_S)
                continue
            last_end = time.monotonic()
            last_write_s = last_end - started

    def _wait_for_batch(self, deadline: float) -> None:
        """Let more updates join the batch until `deadline`, unless their burst is over
        first: no update for twice the burst's mean gap (at least BURST_QUIET_S). Updates
        that keep coming (a start storm, a steady trickle) still share one write; so do a
        lone update and its successor (pending, then running)."""
        while True:
            now = time.monotonic()
            with self._lock:
                first, last, count = self._burst
            if count > 1:
                until = min(deadline, last + max(BURST_QUIET_S, 2 * (last - first) / (count - 1)))
            else:  # one update so far: look again soon, a burst may be starting
                until = min(deadline, now + BURST_QUIET_S)
            if until <= now or self._stop.wait(until - now):
                return

    def _flush(self) -> bool:
        """Send pending updates; on failure keep them (unless newer ones arrived)."""
        with self._lock:
            batch, self._pending = list(self._pending.values()), {}
            self._burst = (0.0, 0.0, 0)
        if not batch:
            return True
        # What the server hears is committed first: a task start's record is a deferred
        # write (TaskRunnerBase._update), so one flush here covers every start since the
        # last sync instead of one commit per start.
        self.state_db.flush()
        try:
            self.rpc.update_allocs(batch)
        except Exception as exc:
            log.warning("client: update_allocs failed: %s", exc)
            with self._lock:
                for update in batch:
                    self._pending.setdefault(str(update["ID"]), update)
            return False
        return True


def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
    """Poll `predicate` until true or `timeout_s` passes (tests and shutdown)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()
