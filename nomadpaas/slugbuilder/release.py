"""Parse a buildpack's `bin/release` output: the small YAML subset classic buildpacks print.

PyYAML is not a dependency, and `bin/release` output is tiny and regular, so this reads
exactly the subset buildpacks use (reference/buildpacks.md §1.3):

    ---
    addons:
      - heroku-postgresql
    default_process_types:
      web: npm start
    config_vars:
      LANG: 'C.UTF-8'

Top-level keys map to ``{}``, ``[]``, a flow list ``[a, b]``, or an indented block of
``key: value`` lines or ``- item`` lines. Scalars are plain (a `` #`` starts a comment),
'single-quoted' (``''`` escapes a quote) or "double-quoted" (``\\"``, ``\\\\``, ``\\n``,
``\\t``). An empty document or ``--- {}`` means "nothing to declare". Anything else is a
ReleaseFormatError naming the line.
"""

from __future__ import annotations

from nomadpaas.frozen import Frozen, init_fields

__all__ = ["ReleaseFormatError", "ReleaseInfo", "parse_release"]


class ReleaseFormatError(ValueError):
    """The release output is outside the supported subset; the message names the line."""


class ReleaseInfo(Frozen):
    """What a buildpack's `bin/release` declared."""

    __match_args__ = ("default_process_types", "config_vars", "addons")
    __slots__ = __match_args__
    default_process_types: dict[str, str]
    config_vars: dict[str, str]
    addons: list[str]

    def __init__(
        self,
        default_process_types: dict[str, str] | None = None,
        config_vars: dict[str, str] | None = None,
        addons: list[str] | None = None,
    ) -> None:
        init_fields(
            self,
            default_process_types={} if default_process_types is None else default_process_types,
            config_vars={} if config_vars is None else config_vars,
            addons=[] if addons is None else addons,
        )


Value = str | dict[str, str] | list[str]


def parse_release(text: str) -> ReleaseInfo:
    """Parse `bin/release` stdout into a ReleaseInfo (unknown top-level keys are ignored)."""
    doc = _parse_document(text)

    def mapping(key: str) -> dict[str, str]:
        value = doc.get(key, {})
        if isinstance(value, str) and value == "":
            return {}
        if not isinstance(value, dict):
            raise ReleaseFormatError(f"`{key}` must be a mapping")
        return value

    addons = doc.get("addons", [])
    if isinstance(addons, str) and addons == "":
        addons = []
    if not isinstance(addons, list):
        raise ReleaseFormatError("`addons` must be a list")
    return ReleaseInfo(
        default_process_types=mapping("default_process_types"),
        config_vars=mapping("config_vars"),
        addons=addons,
    )


def _parse_document(text: str) -> dict[str, Value]:
    lines = [
        (number, raw.rstrip())
        for number, raw in enumerate(text.splitlines(), start=1)
        if raw.strip() and not raw.lstrip().startswith("#")
    ]
    if lines and lines[0][1].startswith("---"):
        rest = lines[0][1][3:].strip()
        if rest not in ("", "{}"):
            raise ReleaseFormatError(f"line {lines[0][0]}: unsupported document start {rest!r}")
        lines = lines[1:]
    if lines and lines[-1][1] == "...":
        lines = lines[:-1]
    doc: dict[str, Value] = {}
    index = 0
    while index < len(lines):
        number, line = lines[index]
        if line[0].isspace():
            raise ReleaseFormatError(f"line {number}: unexpected indentation")
        key, value = _split_key(line, number)
        index += 1
        if value != "":
            doc[key] = _inline_value(value, number)
            continue
        block: list[tuple[int, str]] = []
        while index < len(lines) and lines[index][1][0].isspace():
            block.append((lines[index][0], lines[index][1].strip()))
            index += 1
        doc[key] = _block_value(block)
    return doc


def _block_value(block: list[tuple[int, str]]) -> Value:
    if not block:
        return ""
    if all(line.startswith("- ") or line == "-" for _, line in block):
        return [_scalar(line[1:].strip(), number) for number, line in block]
    result: dict[str, str] = {}
    for number, line in block:
        key, value = _split_key(line, number)
        result[key] = _scalar(value, number)
    return result


def _inline_value(value: str, number: int) -> Value:
    if value == "{}":
        return {}
    if value.startswith("["):
        if not value.endswith("]"):
            raise ReleaseFormatError(f"line {number}: unterminated flow list")
        inner = value[1:-1].strip()
        return [_scalar(item.strip(), number) for item in inner.split(",")] if inner else []
    if value.startswith("{"):
        raise ReleaseFormatError(f"line {number}: flow mappings are not supported")
    return _scalar(value, number)


def _split_key(line: str, number: int) -> tuple[str, str]:
    key, sep, value = line.partition(":")
    if not sep or not key.strip() or (value and not value[0].isspace()):
        raise ReleaseFormatError(f"line {number}: expected `key: value`, got {line.strip()!r}")
    return _scalar(key.strip(), number), value.strip()


def _scalar(text: str, number: int) -> str:
    if text.startswith("'"):
        end = _closing_single_quote(text)
        if end < 0:
            raise ReleaseFormatError(f"line {number}: unterminated quoted string")
        _check_trailing(text[end + 1 :], number)
        return text[1:end].replace("''", "'")
    if text.startswith('"'):
        return _double_quoted(text, number)
    comment = text.find(" #")
    return (text[:comment] if comment >= 0 else text).rstrip()


def _closing_single_quote(text: str) -> int:
    index = 1
    while index < len(text):
        if text[index] == "'":
            if index + 1 < len(text) and text[index + 1] == "'":
                index += 2
                continue
            return index
        index += 1
    return -1


_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "/": "/"}


def _double_quoted(text: str, number: int) -> str:
    out: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            escaped = _ESCAPES.get(text[index + 1])
            if escaped is None:
                raise ReleaseFormatError(f"line {number}: unsupported escape \\{text[index + 1]}")
            out.append(escaped)
            index += 2
            continue
        if char == '"':
            _check_trailing(text[index + 1 :], number)
            return "".join(out)
        out.append(char)
        index += 1
    raise ReleaseFormatError(f"line {number}: unterminated quoted string")


def _check_trailing(rest: str, number: int) -> None:
    rest = rest.strip()
    if rest and not rest.startswith("#"):
        raise ReleaseFormatError(f"line {number}: text after a quoted string: {rest!r}")
