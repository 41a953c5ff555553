"""Which hooks run in which phase (decided once per sequence of hook classes), and the
alloc runner hooks that make their synchronisation objects only when they need them."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from nomadpaas.agent.client.allocdir import AllocDir
from nomadpaas.agent.client.allocrunner.alloc_runner_hooks import GroupShutdownDelayHook
from nomadpaas.agent.client.allocrunner.health_hook import HealthHook
from nomadpaas.agent.client.allocrunner.interfaces import (
    RunnerDestroyHook,
    RunnerPreKillHook,
    RunnerPrerunHook,
)
from nomadpaas.agent.client.lib.protocols import hooks_of, split_hooks
from nomadpaas.agent.structs.duration import NS_PER_S

WAIT_S = 10.0  # generous bound for a thread to finish on a loaded machine


class Prerun:
    name = "prerun"

    def prerun(self, alloc: Mapping[str, Any], alloc_dir: AllocDir) -> None: ...


class PrerunDestroy:
    name = "prerun_destroy"

    def prerun(self, alloc: Mapping[str, Any], alloc_dir: AllocDir) -> None: ...

    def destroy(self, alloc: Mapping[str, Any], alloc_dir: AllocDir) -> None: ...


class Nameless:  # has the method but no `name`: implements no runner protocol
    def prerun(self, alloc: Mapping[str, Any], alloc_dir: AllocDir) -> None: ...


def test_split_hooks_keeps_order_per_phase_and_agrees_with_hooks_of() -> None:
    hooks: list[Any] = [PrerunDestroy(), Nameless(), Prerun(), PrerunDestroy()]
    prerun, prekill, destroy = split_hooks(
        hooks, RunnerPrerunHook, RunnerPreKillHook, RunnerDestroyHook
    )
    assert prerun == [hooks[0], hooks[2], hooks[3]]
    assert prekill == []
    assert destroy == [hooks[0], hooks[3]]
    for protocol, picked in ((RunnerPrerunHook, prerun), (RunnerDestroyHook, destroy)):
        assert hooks_of(hooks, protocol) == picked


def test_split_hooks_answers_each_list_of_instances_not_the_first_one_cached() -> None:
    first: list[Any] = [Prerun(), PrerunDestroy()]
    second: list[Any] = [Prerun(), PrerunDestroy()]  # same classes, other objects
    assert split_hooks(first, RunnerDestroyHook) == [[first[1]]]
    assert split_hooks(second, RunnerDestroyHook) == [[second[1]]]
    other: list[Any] = [PrerunDestroy(), Prerun()]  # same classes, other order
    assert split_hooks(other, RunnerDestroyHook) == [[other[0]]]


def _delayed_stop(delay_s: float) -> dict[str, Any]:
    return {
        "ID": "a1",
        "TaskGroup": "web",
        "Job": {"TaskGroups": [{"Name": "web", "ShutdownDelay": int(delay_s * NS_PER_S)}]},
    }


def _prekill_in_thread(hook: GroupShutdownDelayHook, delay_s: float) -> threading.Event:
    done = threading.Event()

    def stop() -> None:
        hook.prekill(_delayed_stop(delay_s))
        done.set()

    threading.Thread(target=stop, daemon=True).start()
    return done


def test_shutdown_delay_is_skipped_once_cancelled() -> None:
    hook = GroupShutdownDelayHook()
    hook.cancel_wait()
    assert _prekill_in_thread(hook, 60.0).wait(WAIT_S)


def test_shutdown_delay_ends_when_cancelled_while_waiting() -> None:
    hook = GroupShutdownDelayHook()
    done = _prekill_in_thread(hook, 60.0)
    deadline = time.monotonic() + WAIT_S
    while hook._wake is None and time.monotonic() < deadline:  # the wait began
        time.sleep(0.01)
    assert not done.is_set()
    hook.cancel_wait()
    assert done.wait(WAIT_S)


def test_shutdown_delay_waits_its_time_when_not_cancelled() -> None:
    hook = GroupShutdownDelayHook()
    started = time.monotonic()
    hook.prekill(_delayed_stop(0.2))
    assert time.monotonic() - started >= 0.19


class _Runner:
    def __init__(self) -> None:
        self.tasks: dict[str, Any] = {}

    def task_states(self) -> dict[str, Any]:
        return {}

    def set_deployment_status(self, status: dict[str, Any]) -> None:
        raise AssertionError("an untracked allocation reports no health")


def test_untracked_health_hook_makes_no_condition() -> None:
    hook = HealthHook(_Runner())
    alloc = {"ID": "a1", "Job": {"Type": "batch"}}  # batch: never tracked
    hook.prerun(alloc, AllocDir("/nonexistent", "a1"))
    hook.task_states_updated(alloc, {"t": {"State": "running"}})
    hook.update(alloc)
    hook.postrun(alloc)
    hook.prekill(alloc)
    hook.shutdown()
    assert hook._cond_obj is None
