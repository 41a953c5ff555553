"""A task's CPU weight from its `resources.cpu`, as the nice value of its autogroup; stands in
for the `cpu.shares` that Nomad's executor writes into each task's cgroup
(configureCG1 in drivers/shared/executor/executor_universal_linux.go).

Nomad gives every task a cgroup whose `cpu.shares` is the task's CpuShares, the MHz it
reserved (cgroup v2: the same value as `cpu.weight`). A default task (100 MHz) therefore
gets about a tenth of the weight of a default cgroup (1024) when the CPU is contended:
the agent and the rest of the machine are not starved by a start storm or a busy app.
When the CPU is idle, weights change nothing.

Here each task runs in its own session, and Linux gives each session an *autogroup*: a
scheduling group whose weight comes from its nice value (`/proc/<pid>/autogroup`). The
executor writes the nice value whose weight is nearest the task's shares right before it
execs the task (the driver writes it after the start when no executor forked the task).
The task's own nice value stays 0, as under Nomad: the weight belongs to the group.

Best effort, like Nomad on a host without cgroups: no effect when the kernel has no
autogroups (or `kernel.sched_autogroup_enabled` is 0, or the task is not in the root cpu
cgroup); a weight above the default (over 1024 MHz) needs the privilege to lower nice
values; an unprivileged agent may set at most one autogroup per 100 ms (a kernel limit).
"""

from __future__ import annotations

import contextlib
import math

#: CFS weight of nice 0 (and a default cgroup's `cpu.shares`).
DEFAULT_WEIGHT = 1024
#: Each nice step scales the weight by about 1.25 (the kernel's sched_prio_to_weight).
_STEP = 1.25
MIN_NICE, MAX_NICE = -20, 19
AUTOGROUP_PATH = "/proc/{pid}/autogroup"


def autogroup_nice(cpu_shares: int) -> int | None:
    """The autogroup nice value for a task reserving ``cpu_shares`` MHz; None for 0 or less
    (no reservation: the default weight) and for shares that round to nice 0."""
    if cpu_shares <= 0:
        return None
    nice = round(math.log(DEFAULT_WEIGHT / cpu_shares, _STEP))
    nice = max(MIN_NICE, min(MAX_NICE, nice))
    return nice or None


def set_autogroup_nice(pid: int, nice: int) -> None:
    """Give ``pid``'s autogroup ``nice``; best effort (the kernel or our privileges may
    refuse, or the task is gone already), as the executor's write is."""
    with contextlib.suppress(OSError), open(AUTOGROUP_PATH.format(pid=pid), "w") as f:
        f.write(str(nice))
