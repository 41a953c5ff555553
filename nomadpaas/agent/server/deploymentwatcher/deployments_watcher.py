"""Runs one watcher per active deployment and serves the Deployment RPC's writes
(promote, pause/resume, fail, manual allocation health); mirrors
nomad/deploymentwatcher/deployments_watcher.go (+ the write half of
nomad/deployment_endpoint.go).

A manager thread blocks on the deployments table: every active deployment without a
live watcher gets one; a watcher ends by itself once its deployment is terminal or
gone, and is then forgotten. Methods return Nomad's DeploymentUpdateResponse dicts and
raise `RPCError` with Nomad's texts; they block on fsync, so call them from a thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from nomadpaas.agent.server.deploymentwatcher import deployment_watcher as dw
from nomadpaas.agent.server.deploymentwatcher.batcher import BATCH_WINDOW_S, EvalBatcher
from nomadpaas.agent.server.deploymentwatcher.state_triggers import StateTriggers
from nomadpaas.agent.server.state.schema import DEPLOYMENTS
from nomadpaas.agent.server.state.state_store import Snapshot, StateStore
from nomadpaas.agent.structs.deployment import deployment_active

log = logging.getLogger("nomadpaas.agent.server.deploymentwatcher")

MANAGER_WAIT_S = 1.0  # longest blocking wait of the manager (bounds stop())
JOIN_S = 2.0


class DeploymentsWatcher:
    """`start()` / `stop()`; see the module docstring."""

    def __init__(
        self,
        store: StateStore,
        triggers: dw.DeploymentTriggers | None = None,
        *,
        batch_window_s: float = BATCH_WINDOW_S,
    ) -> None:
        self._store = store
        state_triggers = StateTriggers(store)
        self.triggers: dw.DeploymentTriggers = triggers or state_triggers
        self._write_evals = state_triggers.create_evals
        self._batch_window_s = batch_window_s
        self.batcher = EvalBatcher(self._write_evals, batch_window_s)
        self._watchers: dict[str, dw.DeploymentWatcher] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self.batcher = EvalBatcher(self._write_evals, self._batch_window_s)  # fresh after stop
        self._thread = threading.Thread(target=self._run, name="deployments-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.batcher.stop()
        with self._lock:
            watchers, self._watchers = list(self._watchers.values()), {}
        for w in watchers:
            w.stop()
        for w in watchers:
            w.join(JOIN_S)
        if self._thread is not None:
            self._thread.join(JOIN_S)
            self._thread = None

    def watching(self) -> list[str]:
        """IDs of the deployments watched right now (tests, debugging)."""
        with self._lock:
            return sorted(i for i, w in self._watchers.items() if w.alive())

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            asked = time.monotonic()
            try:
                active, new_index = self._store.blocking_query(_active_ids, index, MANAGER_WAIT_S)
            except RuntimeError:
                return
            if self._stop.is_set():
                return
            if new_index == index and time.monotonic() - asked < MANAGER_WAIT_S / 2:
                # Answered at once with nothing new: the store is shutting down and answers
                # every blocking query at once. Wait for stop() instead of spinning.
                self._stop.wait(MANAGER_WAIT_S)
                continue
            index = new_index
            self._sync(active)

    def _sync(self, active: list[str]) -> None:
        with self._lock:
            for deployment_id, w in list(self._watchers.items()):
                if not w.alive():
                    del self._watchers[deployment_id]
            for deployment_id in active:
                if deployment_id in self._watchers:
                    continue
                w = dw.DeploymentWatcher(self._store, self.triggers, self.batcher, deployment_id)
                self._watchers[deployment_id] = w
                w.start()
                log.debug("watching deployment %s", deployment_id)

    # -- the Deployment RPC -----------------------------------------------------------

    def promote_deployment(
        self, deployment_id: str, all_groups: bool, groups: Sequence[str]
    ) -> dict[str, Any]:
        return dw.promote(self.triggers, deployment_id, all_groups, groups).response()

    def pause_deployment(self, deployment_id: str, pause: bool) -> dict[str, Any]:
        return dw.pause(self._store, self.triggers, deployment_id, pause).response()

    def fail_deployment(self, deployment_id: str) -> dict[str, Any]:
        return dw.fail(self._store, self.triggers, deployment_id).response()

    def set_alloc_health(
        self, deployment_id: str, healthy: Sequence[str], unhealthy: Sequence[str]
    ) -> dict[str, Any]:
        out = dw.set_alloc_health(self._store, self.triggers, deployment_id, healthy, unhealthy)
        return out.response()


def _active_ids(snap: Snapshot) -> tuple[list[str], int]:
    ids = [d["ID"] for d in snap.list(DEPLOYMENTS) if deployment_active(d)]
    # Never 0: a blocking query with min_index 0 returns at once (it would spin).
    return ids, max(snap.table_index(DEPLOYMENTS), 1)
