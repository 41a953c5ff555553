"""RestartTracker: restart decisions, delays and Nomad's reason strings."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from nomadpaas.agent.client.allocrunner.taskrunner.restarts import (
    REASON_DELAY,
    REASON_NO_RESTARTS_ALLOWED,
    REASON_SUCCESS_NO_RESTART,
    REASON_UNRECOVERABLE_ERROR,
    REASON_WITHIN_POLICY,
    STATE_KILLED,
    STATE_NOT_RESTARTING,
    STATE_RESTARTING,
    STATE_TERMINATED,
    Decision,
    RestartTracker,
)
from nomadpaas.agent.structs.duration import NS_PER_MIN, NS_PER_S

SERVICE_POLICY = {
    "Attempts": 2,
    "Interval": 30 * NS_PER_MIN,
    "Delay": 15 * NS_PER_S,
    "Mode": "fail",
}


@dataclass
class FixedRand:
    """Returns a fixed fraction of n, so the jitter is known."""

    fraction: float

    def int63n(self, n: int) -> int:
        return int(n * self.fraction)


def tracker(
    policy: dict[str, int | str] | None = None, job_type: str = "service", jitter: float = 0.0
) -> RestartTracker:
    return RestartTracker(policy or SERVICE_POLICY, job_type, start_ns=0, rng=FixedRand(jitter))


def test_service_failures_restart_within_policy_then_fail() -> None:
    t = tracker()
    assert t.set_exit(1).get_state(1) == Decision(
        STATE_RESTARTING, 15 * NS_PER_S, REASON_WITHIN_POLICY
    )
    assert t.set_exit(1).get_state(2).state == STATE_RESTARTING
    third = t.set_exit(1).get_state(3)
    assert third == Decision(
        STATE_NOT_RESTARTING, 0, 'Exceeded allowed attempts 2 in interval 30m0s and mode is "fail"'
    )


def test_service_exit_zero_restarts_like_a_failure() -> None:
    assert tracker().set_exit(0).get_state(1).state == STATE_RESTARTING


def test_batch_exit_zero_terminates() -> None:
    t = tracker(
        {"Attempts": 3, "Interval": 86400 * NS_PER_S, "Delay": 15 * NS_PER_S, "Mode": "fail"},
        "batch",
    )
    assert t.set_exit(0).get_state(1) == Decision(STATE_TERMINATED, 0, REASON_SUCCESS_NO_RESTART)
    assert t.set_exit(2).get_state(2).state == STATE_RESTARTING


@pytest.mark.parametrize(
    ("job_type", "exit_code", "expected"),
    [
        ("service", 0, STATE_NOT_RESTARTING),
        ("batch", 0, STATE_TERMINATED),
        ("batch", 1, STATE_NOT_RESTARTING),
    ],
)
def test_zero_attempts(job_type: str, exit_code: int, expected: str) -> None:
    t = tracker(
        {"Attempts": 0, "Interval": 30 * NS_PER_MIN, "Delay": 15 * NS_PER_S, "Mode": "fail"},
        job_type,
    )
    assert t.set_exit(exit_code).get_state(1) == Decision(expected, 0, REASON_NO_RESTARTS_ALLOWED)


def test_delay_mode_waits_out_the_interval() -> None:
    policy = {"Attempts": 1, "Interval": 10 * NS_PER_MIN, "Delay": 15 * NS_PER_S, "Mode": "delay"}
    t = tracker(policy)
    assert t.set_exit(1).get_state(1 * NS_PER_MIN).state == STATE_RESTARTING
    assert t.set_exit(1).get_state(4 * NS_PER_MIN) == Decision(
        STATE_RESTARTING, 6 * NS_PER_MIN, REASON_DELAY
    )


def test_new_interval_resets_the_count() -> None:
    t = tracker()
    for i in range(2):
        assert t.set_exit(1).get_state(i + 1).state == STATE_RESTARTING
    assert t.set_exit(1).get_state(31 * NS_PER_MIN).reason == REASON_WITHIN_POLICY


def test_unrecoverable_start_error_does_not_restart() -> None:
    t = tracker()
    assert t.set_start_error("bad config", recoverable=False).get_state(1) == Decision(
        STATE_NOT_RESTARTING, 0, REASON_UNRECOVERABLE_ERROR
    )
    assert t.set_start_error("flaky", recoverable=True).get_state(2).state == STATE_RESTARTING


def test_killed_and_user_restart_bypass_policy() -> None:
    t = tracker()
    assert t.set_killed().get_state(1) == Decision(STATE_KILLED, 0, "")
    assert t.set_restart_triggered(failure=False).get_state(2) == Decision(STATE_RESTARTING, 0, "")
    assert t.count == 0


@pytest.mark.parametrize(
    ("fraction", "delay"), [(0.0, 15 * NS_PER_S), (0.5, 16_875_000_000), (0.999, 18_746_250_000)]
)
def test_jitter_adds_up_to_a_quarter(fraction: float, delay: int) -> None:
    decision = tracker(jitter=fraction).set_exit(1).get_state(1)
    assert decision.delay_ns == delay
    assert 15 * NS_PER_S <= decision.delay_ns < 15 * NS_PER_S * 1.25


@pytest.mark.parametrize(
    ("lifecycle", "expected"),
    [
        ({"Hook": "prestart", "Sidecar": False}, STATE_TERMINATED),
        ({"Hook": "prestart", "Sidecar": True}, STATE_RESTARTING),
        ({"Hook": "poststop", "Sidecar": False}, STATE_TERMINATED),
    ],
)
def test_lifecycle_hooks_on_success(lifecycle: dict[str, object], expected: str) -> None:
    t = RestartTracker(SERVICE_POLICY, "service", start_ns=0, lifecycle=lifecycle, rng=FixedRand(0))
    assert t.set_exit(0).get_state(1).state == expected


def test_default_rng_jitter_is_bounded() -> None:
    t = RestartTracker(SERVICE_POLICY, "service", start_ns=0)
    delay = t.set_exit(1).get_state(1).delay_ns
    assert 15 * NS_PER_S <= delay < 15 * NS_PER_S * 1.25
