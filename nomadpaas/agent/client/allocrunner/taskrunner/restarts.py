"""Decides whether an exited task restarts and after how long.

Mirrors client/allocrunner/taskrunner/restarts/restarts.go.

Pure: time and randomness are injected, so the task runner owns the clock and tests
can pin the jitter. One tracker lives per task for the task's whole life.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from nomadpaas.agent.structs.duration import format_duration

JITTER_FRACTION = 0.25  # up to 25% is added to Delay so restarts don't synchronise

REASON_NO_RESTARTS_ALLOWED = "Policy allows no restarts"
REASON_UNRECOVERABLE_ERROR = "Error was unrecoverable"
REASON_WITHIN_POLICY = "Restart within policy"
REASON_DELAY = "Exceeded allowed attempts, applying a delay"
REASON_SUCCESS_NO_RESTART = "Restart unnecessary as task terminated successfully"

# GetState results (TaskState strings in nomad/structs).
STATE_RESTARTING = "Restarting"
STATE_NOT_RESTARTING = "Not Restarting"
STATE_TERMINATED = "Terminated"
STATE_KILLED = "Killed"
STATE_NONE = ""  # nothing to decide (no failure was recorded)


class Rand(Protocol):
    """Go's rand.Int63n: a uniform int in [0, n)."""

    def int63n(self, n: int) -> int: ...


class _GoRand:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def int63n(self, n: int) -> int:
        return self._rng.randrange(n)


_SHARED_RAND = _GoRand(random.Random())


@dataclass(frozen=True)
class Decision:
    state: str
    delay_ns: int
    reason: str


@dataclass
class RestartTracker:
    """Counts restarts per interval and applies a RestartPolicy (Attempts/Interval/Delay/Mode)."""

    policy: dict[str, Any]
    job_type: str
    start_ns: int
    lifecycle: dict[str, Any] | None = None
    # Shared: seeding a generator per task (2.5 KB from os.urandom) costs more than the
    # rest of the tracker, and jitter needs no stream of its own.
    rng: Rand = field(default_factory=lambda: _SHARED_RAND)
    count: int = 0
    _exit_code: int | None = None
    _start_error: str | None = None
    _recoverable: bool = True
    _killed: bool = False
    _restart_triggered: bool = False
    _failure: bool = False

    @property
    def on_success(self) -> bool:
        """Whether a successful exit restarts: services yes, batch no; sidecar hooks decide."""
        hook = (self.lifecycle or {}).get("Hook")
        if hook in ("prestart", "poststart"):
            return bool((self.lifecycle or {}).get("Sidecar"))
        if hook == "poststop":
            return False
        return self.job_type not in ("batch", "sysbatch")

    def set_exit(self, exit_code: int) -> RestartTracker:
        self._exit_code, self._failure = exit_code, True
        return self

    def set_start_error(self, message: str, *, recoverable: bool) -> RestartTracker:
        self._start_error, self._recoverable, self._failure = message, recoverable, True
        return self

    def set_killed(self) -> RestartTracker:
        self._killed = True
        return self

    def set_restart_triggered(self, *, failure: bool) -> RestartTracker:
        """A user restart (failure False) bypasses the policy; a template/check restart counts."""
        if failure:
            self._failure = True
        else:
            self._restart_triggered = True
        return self

    def get_state(self, now_ns: int) -> Decision:
        """The next state for the recorded event; clears it (RestartTracker.GetState)."""
        try:
            return self._decide(now_ns)
        finally:
            self._exit_code = self._start_error = None
            self._recoverable = True
            self._killed = self._restart_triggered = self._failure = False

    def _decide(self, now_ns: int) -> Decision:
        if self._killed:
            return Decision(STATE_KILLED, 0, "")
        if self._restart_triggered:
            return Decision(STATE_RESTARTING, 0, "")
        attempts = int(self.policy.get("Attempts") or 0)
        interval = int(self.policy.get("Interval") or 0)
        exited_ok = self._exit_code == 0 and self._start_error is None
        if attempts == 0:
            if not self.on_success and exited_ok:
                return Decision(STATE_TERMINATED, 0, REASON_NO_RESTARTS_ALLOWED)
            return Decision(STATE_NOT_RESTARTING, 0, REASON_NO_RESTARTS_ALLOWED)
        if now_ns > self.start_ns + interval:
            self.count, self.start_ns = 0, now_ns  # a new interval begins
        self.count += 1
        if not self._failure:
            return Decision(STATE_NONE, 0, "")
        if self._start_error is not None:
            if not self._recoverable:
                return Decision(STATE_NOT_RESTARTING, 0, REASON_UNRECOVERABLE_ERROR)
        elif exited_ok and not self.on_success:
            return Decision(STATE_TERMINATED, 0, REASON_SUCCESS_NO_RESTART)
        if self.count > attempts:
            if self.policy.get("Mode") == "fail":
                reason = (
                    f"Exceeded allowed attempts {attempts} in interval {format_duration(interval)} "
                    'and mode is "fail"'
                )
                return Decision(STATE_NOT_RESTARTING, 0, reason)
            return Decision(STATE_RESTARTING, self.start_ns + interval - now_ns, REASON_DELAY)
        return Decision(STATE_RESTARTING, self._jittered_delay(), REASON_WITHIN_POLICY)

    def _jittered_delay(self) -> int:
        delay = int(self.policy.get("Delay") or 0) or 1
        return delay + int(self.rng.int63n(delay) * JITTER_FRACTION)
