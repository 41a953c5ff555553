"""App-name, config-key and release-version validation (table-driven)."""

from __future__ import annotations

import pytest

from nomadpaas.errors import InvalidInput
from nomadpaas.names import (
    parse_version,
    validate_app_name,
    validate_config_key,
    validate_config_value,
)


@pytest.mark.parametrize("name", ["a", "demo", "my-app", "a1", "x" * 30, "a-b-c9"])
def test_valid_app_names_pass(name: str) -> None:
    assert validate_app_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Demo", "1app", "-app", "app-", "my_app", "my.app", "x" * 31, "app!", " app", "ä"],
)
def test_invalid_app_names_raise_invalid_input_naming_the_rule(name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_app_name(name)
    assert info.value.exit_code == 2
    assert "lowercase" in (info.value.hint or "")


@pytest.mark.parametrize("key", ["A", "_", "DATABASE_URL", "a1", "_X_9"])
def test_valid_config_keys_pass(key: str) -> None:
    assert validate_config_key(key) == key


@pytest.mark.parametrize("key", ["", "1A", "A-B", "A B", "A=B", "é", "A.B"])
def test_invalid_config_keys_raise(key: str) -> None:
    with pytest.raises(InvalidInput):
        validate_config_key(key)


def test_config_value_with_nul_is_refused() -> None:
    assert validate_config_value("A", "=x y\n") == "=x y\n"
    with pytest.raises(InvalidInput):
        validate_config_value("A", "a\x00b")


@pytest.mark.parametrize(
    ("text", "number"), [("v1", 1), ("V12", 12), ("7", 7), (3, 3), (" v4 ", 4)]
)
def test_parse_version_accepts_vn_and_n(text: str | int, number: int) -> None:
    assert parse_version(text) == number


@pytest.mark.parametrize("text", ["v0", "0", "x1", "v", "-1", "v1.2", "", True])
def test_parse_version_rejects_garbage(text: str | int) -> None:
    with pytest.raises(InvalidInput):
        parse_version(text)
