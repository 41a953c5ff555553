"""Request JSON decoding with Go `encoding/json` semantics; mirrors what Nomad's
`decodeBody` gets from Go for free.

Go matches JSON keys to struct fields case-insensitively (an exact match wins) and drops
unknown keys; python-nomad relies on that (it sends `UnHealthyAllocationIDs`). A `Struct`
spec lists a Go struct's fields by canonical PascalCase name; decoding renames matching
keys to that name, drops the rest, type-checks scalars, and recurses into nested specs.
Free-form maps (`Items`, `Meta`, `Env`, `Config`) are `MapOf(...)`/`ANY`: their keys are
user data and are never renamed.

    SPEC = Struct("Variable", {"Items": MapOf(STR), "Lock": Struct("VariableLock", {...})})
    body = decode_body(raw_bytes, SPEC)      # raises DecodeError with Go's message

A JSON `null` is kept as None (Go leaves the field at its zero value); absent fields stay
absent, so callers apply defaults with `.get()`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class DecodeError(ValueError):
    """Bad request JSON; the message is the text Go's decoder would give (HTTP 400)."""


class Spec:
    """The shape of a JSON value, named after its Go type for error messages."""

    go_type: str = "interface {}"

    def decode(self, value: Any, where: str) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Scalar(Spec):
    """A string, number or bool; `kind` is one of str, int, uint, float, bool."""

    kind: str
    go_type: str

    def decode(self, value: Any, where: str) -> Any:
        if value is None:
            return None
        ok = {
            "str": isinstance(value, str),
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "uint": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
            "float": isinstance(value, int | float) and not isinstance(value, bool),
        }[self.kind]
        if not ok:
            raise DecodeError(_type_error(value, where, self.go_type))
        return float(value) if self.kind == "float" else value


@dataclass(frozen=True)
class Any_(Spec):
    """Any JSON value, passed through untouched (Go `interface{}` / free-form config)."""

    go_type: str = "interface {}"

    def decode(self, value: Any, where: str) -> Any:
        return value


@dataclass(frozen=True)
class ListOf(Spec):
    elem: Spec

    @property
    def go_type(self) -> str:  # type: ignore[override]
        return "[]" + self.elem.go_type

    def decode(self, value: Any, where: str) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):
            raise DecodeError(_type_error(value, where, self.go_type))
        return [self.elem.decode(v, where) for v in value]


@dataclass(frozen=True)
class MapOf(Spec):
    """A JSON object with user-chosen keys (kept verbatim) and values of `elem`."""

    elem: Spec

    @property
    def go_type(self) -> str:  # type: ignore[override]
        return "map[string]" + self.elem.go_type

    def decode(self, value: Any, where: str) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise DecodeError(_type_error(value, where, self.go_type))
        return {k: self.elem.decode(v, where) for k, v in value.items()}


@dataclass(frozen=True)
class Struct(Spec):
    """A Go struct: `fields` maps canonical field names to their specs."""

    name: str
    fields: Mapping[str, Spec]
    _folded: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_folded", {k.lower(): k for k in self.fields})

    @property
    def go_type(self) -> str:  # type: ignore[override]
        return self.name

    def canonical(self, key: str) -> str | None:
        """The field a JSON key lands in: exact name first, then case-insensitively."""
        if key in self.fields:
            return key
        return self._folded.get(key.lower())

    def decode(self, value: Any, where: str = "") -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise DecodeError(_type_error(value, where or self.name, self.go_type))
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = self.canonical(key)
            if name is None:
                continue  # Go ignores unknown keys
            inner = f"{where or self.name}.{name}"
            out[name] = self.fields[name].decode(item, inner)
        return out


STR = Scalar("str", "string")
INT = Scalar("int", "int")
INT64 = Scalar("int", "int64")
UINT64 = Scalar("uint", "uint64")
FLOAT = Scalar("float", "float64")
BOOL = Scalar("bool", "bool")
ANY = Any_()


def decode_body(raw: bytes, spec: Spec) -> Any:
    """Parse and decode a request body; empty or malformed bodies raise DecodeError."""
    if not raw.strip():
        raise DecodeError("Request body is empty")
    return spec.decode(parse_json(raw), "")


def parse_json(raw: bytes) -> Any:
    """`json.loads` with Go-flavoured error texts (`unexpected EOF`, `invalid character`)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid character in request body (not UTF-8)") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        rest = text[exc.pos :].strip()
        if not rest:
            raise DecodeError("unexpected EOF") from exc
        raise DecodeError(_go_syntax_error(exc.msg, rest)) from exc


# Python's JSONDecodeError message prefix → the words Go's scanner uses after the character.
_GO_SCANNER_CONTEXT = {
    "Expecting value": "looking for beginning of value",
    "Expecting property name": "looking for beginning of object key string",
    "Expecting ':' delimiter": "after object key",
    "Extra data": "after top-level value",
}
_GO_LITERALS = ("null", "true", "false")


def _go_syntax_error(msg: str, rest: str) -> str:
    """Go's text for a syntax error at the start of `rest` (never empty)."""
    literal = next((lit for lit in _GO_LITERALS if lit[0] == rest[0]), None)
    if literal is not None and msg.startswith("Expecting value"):
        # Go reads a literal letter by letter: `nope` fails at 'o', expecting 'u'.
        for i, expected in enumerate(literal):
            if i >= len(rest):
                return "unexpected EOF"
            if rest[i] != expected:
                got = _go_char(rest[i])
                return (
                    f"invalid character {got} in literal {literal} (expecting {_go_char(expected)})"
                )
    for prefix, context in _GO_SCANNER_CONTEXT.items():
        if msg.startswith(prefix):
            return f"invalid character {_go_char(rest[0])} {context}"
    return f"invalid character {_go_char(rest[0])} ({msg.lower()})"


def _go_char(c: str) -> str:
    return "'\\''" if c == "'" else f"'{c}'"


def _type_error(value: Any, where: str, go_type: str) -> str:
    kind = (
        "string"
        if isinstance(value, str)
        else "bool"
        if isinstance(value, bool)
        else "number"
        if isinstance(value, int | float)
        else "array"
        if isinstance(value, list)
        else "object"
    )
    if kind == "number":
        kind = f"number {json.dumps(value)}" if not isinstance(value, int) else "number"
    if "." not in where:
        return f"json: cannot unmarshal {kind} into Go value of type {go_type}"
    return f"json: cannot unmarshal {kind} into Go struct field {where} of type {go_type}"
