"""`/v1/client/allocation/:id/{restart,signal,stats,gc}` and `/v1/client/gc`: requests
served by the node's alloc runners; mirrors command/agent/alloc_endpoint.go's
ClientAllocRequest and ClientGCRequest (+ client/alloc_endpoint.go).
"""

from __future__ import annotations

import os
import time
from typing import Any

from starlette.concurrency import run_in_threadpool

from nomadpaas.agent.client.allocrunner.alloc_runner import AllocRunner, AllocRunnerError
from nomadpaas.agent.drivers.base import DriverError
from nomadpaas.agent.http.client_fs_endpoint import CLIENT_KEY, alloc_runner
from nomadpaas.agent.http.decode import BOOL, STR, Struct
from nomadpaas.agent.http.errors import CodedError
from nomadpaas.agent.http.server import HTTPRequest, Reply, Router

RESTART_SPEC = Struct("AllocRestartRequest", {"TaskName": STR, "AllTasks": BOOL})
SIGNAL_SPEC = Struct("AllocSignalRequest", {"Task": STR, "Signal": STR})
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
ERR_NOT_ELIGIBLE_FOR_GC = "No such allocation on client or allocation not eligible for GC"
GC_METHODS = ("GET", "PUT", "POST")  # python-nomad sends GET


def register(router: Router) -> None:
    router.add(("PUT", "POST"), "/v1/client/allocation/{alloc_id}/restart", alloc_restart)
    router.add(("PUT", "POST"), "/v1/client/allocation/{alloc_id}/signal", alloc_signal)
    router.add("GET", "/v1/client/allocation/{alloc_id}/stats", alloc_stats)
    router.add(GC_METHODS, "/v1/client/allocation/{alloc_id}/gc", alloc_gc)
    router.add(GC_METHODS, "/v1/client/gc", client_gc)


async def _optional_body(req: HTTPRequest, spec: Struct) -> dict[str, Any]:
    """Restart may come without a body (python-nomad sends none)."""
    if not (await req.body()).strip():
        return {}
    body = await req.decode(spec)
    return dict(body or {})


async def alloc_restart(req: HTTPRequest) -> Reply:
    body = await _optional_body(req, RESTART_SPEC)
    runner = alloc_runner(req)
    task = str(body.get("TaskName") or "")
    all_tasks = bool(body.get("AllTasks"))
    if task and all_tasks:
        raise CodedError(500, "task name cannot be set when restarting all tasks")
    try:
        await run_in_threadpool(runner.restart, task, all_tasks)
    except AllocRunnerError as exc:
        raise CodedError(500, str(exc)) from None
    return Reply({"Index": 0})


async def alloc_signal(req: HTTPRequest) -> Reply:
    body = await _optional_body(req, SIGNAL_SPEC)
    runner = alloc_runner(req)
    try:
        await run_in_threadpool(
            runner.signal, str(body.get("Task") or ""), str(body.get("Signal") or "SIGKILL")
        )
    except (AllocRunnerError, DriverError) as exc:
        raise CodedError(500, str(exc)) from None
    return Reply({"Index": 0})


def _usage(rss_bytes: int, cpu_ticks: float) -> dict[str, Any]:
    return {
        "MemoryStats": {
            "RSS": rss_bytes, "Cache": 0, "Swap": 0, "MappedFile": 0, "Usage": rss_bytes,
            "MaxUsage": 0, "KernelUsage": 0, "KernelMaxUsage": 0, "Measured": ["RSS"],
        },
        "CpuStats": {
            "SystemMode": 0.0, "UserMode": 0.0, "TotalTicks": cpu_ticks, "ThrottledPeriods": 0,
            "ThrottledTime": 0, "Percent": 0.0, "Measured": ["Total Ticks"],
        },
        "DeviceStats": None,
    }  # fmt: skip


def _proc_usage(pid: int | None) -> tuple[int, float]:
    """(RSS bytes, CPU ticks) of the task's main process from /proc; zeros if gone."""
    if pid is None:
        return 0, 0.0
    try:
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE_SIZE
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        fields = raw[raw.rindex(b")") + 2 :].split()
        ticks = float(int(fields[11]) + int(fields[12]))
    except (OSError, ValueError, IndexError):
        return 0, 0.0
    return rss, ticks


def _alloc_stats(runner: AllocRunner) -> dict[str, Any]:
    now = time.time_ns()
    tasks: dict[str, Any] = {}
    total_rss, total_ticks = 0, 0.0
    for name, tr in runner.tasks.items():
        rss, ticks = _proc_usage(tr.main_pid())
        total_rss += rss
        total_ticks += ticks
        tasks[name] = {"ResourceUsage": _usage(rss, ticks), "Timestamp": now, "Pids": None}
    return {"ResourceUsage": _usage(total_rss, total_ticks), "Tasks": tasks, "Timestamp": now}


async def alloc_stats(req: HTTPRequest) -> Reply:
    return Reply(_alloc_stats(alloc_runner(req)))


async def alloc_gc(req: HTTPRequest) -> Reply:
    alloc_runner(req)  # 404 for an allocation this node never ran
    client = req.deps.extra[CLIENT_KEY]
    if not await run_in_threadpool(client.collect, req.params["alloc_id"]):
        raise CodedError(500, ERR_NOT_ELIGIBLE_FOR_GC)
    return Reply(None)


async def client_gc(req: HTTPRequest) -> Reply:
    client = req.deps.extra.get(CLIENT_KEY)
    if client is not None:
        await run_in_threadpool(client.collect_all)
    return Reply(None)
