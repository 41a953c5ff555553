"""The server: the RPC endpoints, the eval broker and the scheduling workers over one
state store, with start/stop; mirrors nomad/server.go (and the leader duties of
nomad/leader.go: enabling the broker and restoring pending evaluations).

Evaluations reach the broker from committed writes: `start()` subscribes to the store,
and every eval row committed with Status `pending` is enqueued (delayed ones by their
WaitUntil). Writers never talk to the broker, exactly as Nomad's FSM enqueues on apply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from nomadpaas.agent.server.core_gc import CoreGC
from nomadpaas.agent.server.deploymentwatcher.deployments_watcher import DeploymentsWatcher
from nomadpaas.agent.server.eval_broker import EvalBroker
from nomadpaas.agent.server.job_endpoint import Jobs
from nomadpaas.agent.server.node_endpoint import NodeRPC
from nomadpaas.agent.server.state.schema import EVALS
from nomadpaas.agent.server.state.state_store import Commit, StateStore
from nomadpaas.agent.server.worker import Worker
from nomadpaas.agent.structs.evaluation import EVAL_STATUS_PENDING

log = logging.getLogger(__name__)

DEFAULT_NUM_WORKERS = 1  # one scheduler keeps placement (ports) race-free; plan apply
# still rejects a conflicting plan if more are configured.


class Server:
    """`Server(store).start()`; `stop()` before closing the store."""

    def __init__(
        self, store: StateStore, num_workers: int = DEFAULT_NUM_WORKERS, *, gc: bool = True
    ) -> None:
        self.store = store
        self.broker = EvalBroker()
        self.jobs = Jobs(store)
        self.node_rpc = NodeRPC(store)
        self.deployment_watcher = DeploymentsWatcher(store)
        self._workers = [Worker(store, self.broker, f"worker-{i}") for i in range(num_workers)]
        self._gc = CoreGC(store) if gc else None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        self.broker.set_enabled(True)
        self._unsubscribe = self.store.subscribe(self._on_commit)
        restored = 0
        for evaluation in self.store.snapshot().list(EVALS):
            if evaluation["Status"] == EVAL_STATUS_PENDING:
                self.broker.enqueue(evaluation)
                restored += 1
        if restored:
            log.info("restored %d pending evaluations", restored)
        for worker in self._workers:
            worker.start()
        self.deployment_watcher.start()
        if self._gc is not None:
            self._gc.start()

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.broker.set_enabled(False)
        for worker in self._workers:
            worker.stop()
        self.deployment_watcher.stop()
        if self._gc is not None:
            self._gc.stop()

    def _on_commit(self, commit: Commit) -> None:
        # Runs under the store's write lock: only hand work to the broker (its own lock).
        for change in commit.changes:
            pending = change.table == EVALS and change.obj["Status"] == EVAL_STATUS_PENDING
            if pending and not change.deleted:
                self.broker.enqueue(change.obj)
