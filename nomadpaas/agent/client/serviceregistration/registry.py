"""The node's registry of workload service instances and their check states, for both
providers; mirrors client/serviceregistration (the Handler interface and its Consul and
Nomad implementations, plus checks/checkstore for check results).

- **Register/deregister** whole instances (one service of one alloc, group or task).
  Consul-provider instances are served by the agent's Consul-compatible API
  (nomadpaas/agent/consul); Nomad-provider ones are also written to the server state
  (nomad_provider.py) for `/v1/service/:name`.
- **Checks** of registered instances run on the shared CheckRunner (checks.py); each
  result updates that check's state, keeps a short status history and, when the status
  changes, moves the registry's index.
- **Index and waiting**: every registration change or check status change moves
  `index` (and the index of that service name; registrations also move
  `catalog_index`). Readers block on it from threads (`wait`) or from asyncio
  (`wait_async`) — Consul's blocking queries — and `subscribe(cb)` callbacks run after
  each change (the alloc health tracker). See changes.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from nomadpaas.agent.client.serviceregistration.changes import ChangeIndex
from nomadpaas.agent.client.serviceregistration.checks import (
    STATUS_CRITICAL,
    STATUS_PASSING,
    STATUS_WARNING,
    CheckResult,
    CheckRunner,
    CheckSpec,
)
from nomadpaas.agent.client.serviceregistration.nomad_provider import NomadProvider

log = logging.getLogger("nomadpaas.agent.client.serviceregistration")

PROVIDER_CONSUL = "consul"
PROVIDER_NOMAD = "nomad"
STATUS_PENDING = "pending"  # a Nomad-provider check before its first result
# Nomad's check result statuses (nomad/structs/checks.go).
NOMAD_SUCCESS = "success"
NOMAD_FAILURE = "failure"
ON_UPDATE_IGNORE = "ignore"  # readiness check: never blocks health
ON_UPDATE_IGNORE_WARNINGS = "ignore_warnings"
HISTORY_LEN = 10  # results kept per check (newest last)


@dataclass(frozen=True)
class CheckDefinition:
    """One check of one instance. `spec` is None for types we cannot run (script,
    grpc): such a check stays at its initial status with an explaining Output."""

    id: str
    name: str
    type: str
    spec: CheckSpec | None
    initial_status: str = STATUS_CRITICAL
    on_update: str = "require_healthy"
    notes: str = ""
    interval_ns: int = 0
    timeout_ns: int = 0


@dataclass(frozen=True)
class ServiceInstance:
    """One registered service of one allocation (`task` is "" for a group service)."""

    id: str
    name: str
    provider: str
    namespace: str
    job_id: str
    group: str
    task: str
    alloc_id: str
    alloc_name: str
    address: str
    port: int
    tags: tuple[str, ...] = ()
    meta: tuple[tuple[str, str], ...] = ()
    checks: tuple[CheckDefinition, ...] = ()
    canary: bool = False


@dataclass
class CheckState:
    """The live state of one check; `since_ns` is when `status` last changed."""

    check: CheckDefinition
    service_id: str
    status: str
    output: str
    status_code: int = 0
    timestamp_ns: int = 0
    since_ns: int = 0
    create_index: int = 0
    modify_index: int = 0
    history: deque[CheckResult] = field(default_factory=lambda: deque(maxlen=HISTORY_LEN))

    def copy(self) -> CheckState:
        return replace(self, history=deque(self.history, maxlen=HISTORY_LEN))


@dataclass(frozen=True)
class RegisteredInstance:
    instance: ServiceInstance
    create_index: int
    modify_index: int
    checks: tuple[CheckState, ...]


@dataclass(frozen=True)
class AllocChecks:
    """The answer to "are all checks of alloc X passing, since when" (§4.3: Consul
    checks when the alloc has any, else its Nomad ones; readiness checks ignored)."""

    total: int
    healthy: bool
    since_ns: int | None  # when the last of them became passing; None unless healthy
    failing: tuple[str, ...]  # names of the checks that are not passing
    index: int


def nomad_status(status: str) -> str:
    """Consul status → Nomad check result status."""
    if status == STATUS_PENDING:
        return STATUS_PENDING
    return NOMAD_SUCCESS if status == STATUS_PASSING else NOMAD_FAILURE


def _counts_as_passing(state: CheckState) -> bool:
    if state.status == STATUS_PASSING:
        return True
    return state.status == STATUS_WARNING and state.check.on_update == ON_UPDATE_IGNORE_WARNINGS


class ServiceRegistry:
    """Thread-safe; see the module docstring. `nomad` is None in unit tests (Nomad
    instances then stay in memory only)."""

    def __init__(
        self,
        node_id: str,
        node_name: str,
        datacenter: str,
        nomad: NomadProvider | None = None,
        runner: CheckRunner | None = None,
    ) -> None:
        self.node_id = node_id
        self.node_name = node_name
        self.datacenter = datacenter
        self.nomad = nomad
        self.runner = runner if runner is not None else CheckRunner(self._record)
        self._lock = threading.Lock()
        self._instances: dict[str, RegisteredInstance] = {}
        # Instance IDs by allocation: the hooks ask per allocation, and a scan of every
        # instance per ask made a thousand-instance deploy quadratic.
        self._by_alloc: dict[str, set[str]] = {}
        self._checks: dict[str, CheckState] = {}
        self._changes = ChangeIndex()
        self._service_index: dict[str, int] = {}  # service name -> last index touching it
        self._catalog_index = 1  # last (de)registration; check results do not move it
        # Waiting on the registry: threads, asyncio handlers, subscribers (changes.py).
        self.wait = self._changes.wait
        self.wait_async = self._changes.wait_async
        self.subscribe = self._changes.subscribe

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the check runner; forget Nomad rows left by an earlier agent (the hooks
        re-register what is still running)."""
        if self.nomad is not None:
            self.nomad.delete_node()
        self.runner.start()

    def stop(self) -> None:
        """Stop running checks and wake every waiter (agent shutdown). Registrations
        stay: tasks outlive the agent, and Nomad rows stay in the state."""
        self.runner.stop()
        self.interrupt()

    def interrupt(self) -> None:
        """Make every parked and future wait return now (the agent is shutting down)."""
        self._changes.close()

    # -- writes -----------------------------------------------------------------------

    def register(self, instances: Sequence[ServiceInstance]) -> None:
        """Add or replace instances; unchanged ones keep their indexes and check states."""
        changed: list[ServiceInstance] = []
        now = time.time_ns()
        with self._lock:
            for inst in instances:
                old = self._instances.get(inst.id)
                if old is not None and old.instance == inst:
                    continue
                index = self._changes.bump()
                changed.append(inst)
                states = []
                old_ids = {c.check.id for c in old.checks} if old is not None else set()
                for check in inst.checks:
                    prev = self._checks.get(check.id)
                    if prev is not None and prev.check == check:
                        state = prev
                    else:
                        state = _initial_state(inst, check, now, index)
                    self._checks[check.id] = state
                    states.append(state)
                for gone in old_ids - {c.id for c in inst.checks}:
                    self._checks.pop(gone, None)
                    self.runner.remove(gone)
                self._instances[inst.id] = RegisteredInstance(
                    inst,
                    old.create_index if old is not None else index,
                    index,
                    tuple(states),
                )
                if old is not None and old.instance.alloc_id != inst.alloc_id:
                    self._unindex(old.instance)
                self._by_alloc.setdefault(inst.alloc_id, set()).add(inst.id)
                self._service_index[inst.name] = self._catalog_index = index
                if old is not None and old.instance.name != inst.name:
                    self._service_index[old.instance.name] = index
        for inst in changed:
            for check in inst.checks:
                if check.spec is not None:
                    self.runner.add(check.id, check.spec)
        nomad = [i for i in changed if i.provider == PROVIDER_NOMAD]
        if nomad and self.nomad is not None:
            self._write_nomad(self.nomad.upsert, nomad)
        if changed:
            self._changes.notify()

    def deregister(self, service_ids: Iterable[str]) -> list[ServiceInstance]:
        """Remove instances (unknown IDs are ignored); returns the removed ones."""
        removed: list[ServiceInstance] = []
        with self._lock:
            for sid in service_ids:
                reg = self._instances.pop(sid, None)
                if reg is None:
                    continue
                self._unindex(reg.instance)
                index = self._changes.bump()
                self._service_index[reg.instance.name] = self._catalog_index = index
                removed.append(reg.instance)
                for state in reg.checks:
                    self._checks.pop(state.check.id, None)
        for inst in removed:
            for check in inst.checks:
                self.runner.remove(check.id)
        nomad = [i.id for i in removed if i.provider == PROVIDER_NOMAD]
        if nomad and self.nomad is not None:
            self._write_nomad(self.nomad.delete, nomad)
        if removed:
            self._changes.notify()
        return removed

    def deregister_alloc(self, alloc_id: str, task: str | None = None) -> list[ServiceInstance]:
        """Remove an allocation's instances: all, the group's (`task=""`), or one task's;
        returns them in ID order."""
        with self._lock:
            ids = sorted(
                sid
                for sid in self._by_alloc.get(alloc_id, ())
                if task is None or self._instances[sid].instance.task == task
            )
        return self.deregister(ids)  # in ID order, as instances() lists them

    def _unindex(self, inst: ServiceInstance) -> None:
        """Drop `inst` from the by-allocation index (lock held)."""
        ids = self._by_alloc.get(inst.alloc_id)
        if ids is not None:
            ids.discard(inst.id)
            if not ids:
                del self._by_alloc[inst.alloc_id]

    def _write_nomad(self, fn: Callable[[Any], int], arg: Any) -> None:
        # A failed server write (the store closing at shutdown) must not fail the alloc
        # runner's hook: the next agent start drops this node's rows and re-registers.
        try:
            fn(arg)
        except Exception:
            log.exception("nomad service registration write failed")

    def _record(self, check_id: str, result: CheckResult) -> None:
        """A check result from the runner (its thread)."""
        changed = False
        with self._lock:
            state = self._checks.get(check_id)
            if state is None:
                return  # deregistered while the probe ran
            state.history.append(result)
            state.output = result.output
            state.status_code = result.status_code
            state.timestamp_ns = result.timestamp_ns
            if state.status != result.status:
                # Only status changes move the index: output-only changes would wake
                # every blocking query on each interval (Consul suppresses them too).
                index = self._changes.bump()
                state.status = result.status
                state.since_ns = result.timestamp_ns
                state.modify_index = index
                reg = self._instances.get(state.service_id)
                if reg is not None:
                    self._service_index[reg.instance.name] = index
                changed = True
        if changed:
            self._changes.notify()

    # -- reads ------------------------------------------------------------------------

    @property
    def index(self) -> int:
        return self._changes.index

    @property
    def catalog_index(self) -> int:
        """The index of the last registration or deregistration (not check changes)."""
        return self._catalog_index

    def service_index(self, name: str) -> int:
        """The index of the last change to instances named `name` (1 if none ever)."""
        with self._lock:
            return self._service_index.get(name, 1)

    def instances(
        self, *, provider: str | None = None, name: str | None = None, alloc_id: str | None = None
    ) -> list[RegisteredInstance]:
        """Registered instances (with copies of their check states), sorted by ID."""
        with self._lock:
            if alloc_id is None:
                candidates: Iterable[RegisteredInstance] = self._instances.values()
            else:
                candidates = [self._instances[sid] for sid in self._by_alloc.get(alloc_id, ())]
            out = [
                RegisteredInstance(
                    r.instance,
                    r.create_index,
                    r.modify_index,
                    tuple(self._checks[c.check.id].copy() for c in r.checks),
                )
                for r in candidates
                if (provider is None or r.instance.provider == provider)
                and (name is None or r.instance.name == name)
                and (alloc_id is None or r.instance.alloc_id == alloc_id)
            ]
        return sorted(out, key=lambda r: r.instance.id)

    def alloc_checks(self, alloc_id: str) -> AllocChecks:
        """Are all checks of this allocation passing, and since when (§4.3)."""
        regs = self.instances(alloc_id=alloc_id)
        consul = [s for r in regs if r.instance.provider == PROVIDER_CONSUL for s in r.checks]
        states = consul or [s for r in regs for s in r.checks]
        counted = [s for s in states if s.check.on_update != ON_UPDATE_IGNORE]
        failing = tuple(s.check.name for s in counted if not _counts_as_passing(s))
        healthy = not failing
        since = max((s.since_ns for s in counted), default=None) if healthy else None
        return AllocChecks(len(counted), healthy, since, failing, self.index)


def _initial_state(
    inst: ServiceInstance, check: CheckDefinition, now_ns: int, index: int
) -> CheckState:
    if inst.provider == PROVIDER_NOMAD:
        status = STATUS_PENDING
    else:
        status = check.initial_status or STATUS_CRITICAL
    output = "" if check.spec is not None else f"check type {check.type!r} is not supported"
    return CheckState(
        check=check,
        service_id=inst.id,
        status=status,
        output=output,
        since_ns=now_ns,
        create_index=index,
        modify_index=index,
    )
