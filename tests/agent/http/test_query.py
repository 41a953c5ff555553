"""Query parsing: Go ParseBool, blocking `index`/`wait`, Go durations, the Host guard."""

from __future__ import annotations

import pytest

from nomadpaas.agent.http.errors import CodedError
from nomadpaas.agent.http.query import MAX_BLOCKING_WAIT_S, parse_blocking, parse_bool
from nomadpaas.agent.http.server import host_allowed
from nomadpaas.agent.structs.duration import format_duration, parse_duration


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_parse_bool_true(text: str) -> None:
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_parse_bool_false(text: str) -> None:
    assert parse_bool(text) is False


@pytest.mark.parametrize("text", ["yes", "", "tRUE", "2"])
def test_parse_bool_rejects_others(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bool(text)


def test_blocking_defaults_caps_and_jitter() -> None:
    opts = parse_blocking({"index": "7", "wait": "1s"})
    assert opts.min_index == 7 and 1.0 <= opts.wait_s <= 1.0 + 1 / 16
    assert (
        MAX_BLOCKING_WAIT_S
        <= parse_blocking({"wait": "1h"}).wait_s
        <= MAX_BLOCKING_WAIT_S * 17 / 16
    )
    assert parse_blocking({}).min_index == 0
    assert parse_blocking({"wait": "100ms"}).wait_s < 0.2


@pytest.mark.parametrize(
    ("query", "message"),
    [({"wait": "5"}, "Invalid wait time"), ({"wait": "x"}, "Invalid wait time"),
     ({"index": "-1"}, "Invalid index"), ({"index": "abc"}, "Invalid index")],
)  # fmt: skip
def test_blocking_bad_values_are_400(query: dict[str, str], message: str) -> None:
    with pytest.raises(CodedError) as err:
        parse_blocking(query)
    assert (err.value.code, err.value.message) == (400, message)


@pytest.mark.parametrize(
    ("text", "ns", "formatted"),
    [("5s", 5 * 10**9, "5s"), ("100ms", 10**8, "100ms"), ("1m", 60 * 10**9, "1m0s"),
     ("1h30m", 5400 * 10**9, "1h30m0s"), ("1.5s", 15 * 10**8, "1.5s"), ("0", 0, "0s")],
)  # fmt: skip
def test_go_durations_round_trip(text: str, ns: int, formatted: str) -> None:
    assert parse_duration(text) == ns
    assert format_duration(ns) == formatted


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:4646", "127.0.0.1", "127.0.0.1:4646", "127.8.9.10:1",
     "[::1]", "[::1]:4646", "::1", "LOCALHOST:80"],
)  # fmt: skip
def test_host_guard_allows_loopback(host: str) -> None:
    assert host_allowed(host, "127.0.0.1")


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:4646", "localhost.evil.example", "10.0.0.1:4646",
     "app.localhost", "", None, "[::2]:80", "0.0.0.0"],
)  # fmt: skip
def test_host_guard_refuses_others(host: str | None) -> None:
    assert not host_allowed(host, "127.0.0.1")


def test_host_guard_allows_explicit_bind_address() -> None:
    assert host_allowed("10.1.2.3:4646", "10.1.2.3")
