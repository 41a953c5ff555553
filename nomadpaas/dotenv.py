"""Parsers for config text: dotenv files (`--from-file`) and `K=V` command-line pairs.

Dotenv rules (the common subset of docker compose, python-dotenv and Heroku's
`heroku config:set $(cat .env)` habits):

- blank lines and lines whose first non-blank character is `#` are ignored;
- an optional `export ` prefix; whitespace around the key and the `=` is ignored;
- unquoted values are trimmed, and ` #…` after whitespace is a comment;
- `'single quotes'` are literal and may span lines;
- `"double quotes"` may span lines and understand `\\n \\r \\t \\" \\\\ \\$`; any other
  backslash is kept as written;
- no `${VAR}` expansion: values are stored exactly as parsed.

Errors name the source and line (`.env:3: …`) and raise InvalidInput; nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable

from nomadpaas.errors import InvalidInput
from nomadpaas.names import validate_config_key, validate_config_value

__all__ = ["format_dotenv", "parse_dotenv", "parse_pairs"]

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}
#: What `format_dotenv` escapes inside double quotes; the backslash first, so the
#: backslashes the later replacements add are not doubled again.
_FORMAT_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("$", "\\$"), ("\n", "\\n"), ("\r", "\\r"))


def parse_pairs(args: Iterable[str]) -> dict[str, str]:
    """`["A=1", "B==x"]` → `{"A": "1", "B": "=x"}`: split at the first `=`; later wins."""
    values: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise InvalidInput(
                f"{arg!r} is not a KEY=VALUE pair.",
                hint="Write config vars as KEY=VALUE, e.g. `nomadpaas config set -a APP A=1`.",
            )
        values[validate_config_key(key)] = validate_config_value(key, value)
    return values


def format_dotenv(values: dict[str, str]) -> str:
    """`values` as dotenv text `parse_dotenv` reads back unchanged (keys sorted)."""
    lines = []
    for key in sorted(values):
        value = values[key]
        for raw, escaped in _FORMAT_ESCAPES:
            value = value.replace(raw, escaped)
        lines.append(f'{validate_config_key(key)}="{value}"\n')
    return "".join(lines)


def parse_dotenv(text: str, source: str = "<dotenv>") -> dict[str, str]:
    """Parse dotenv `text`; `source` names it in error messages."""
    return _Parser(text, source).parse()


class _Parser:
    """A small hand-written scanner: one position in the text, one line counter."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text.replace("\r\n", "\n")
        self.source = source
        self.pos = 0
        self.line = 1

    def error(self, message: str, line: int | None = None) -> InvalidInput:
        return InvalidInput(
            f"{self.source}:{line or self.line}: {message}",
            hint="Each line is KEY=VALUE; quote values that contain spaces or newlines.",
        )

    def parse(self) -> dict[str, str]:
        values: dict[str, str] = {}
        while self.pos < len(self.text):
            raw = self._read_line_rest()
            stripped = raw.strip()
            start_line = self.line
            if not stripped or stripped.startswith("#"):
                self._newline()
                continue
            if stripped.startswith("export ") or stripped.startswith("export\t"):
                stripped = stripped[len("export") :].lstrip()
            key, sep, after = stripped.partition("=")
            key = key.strip()
            if not sep:
                raise self.error(f"expected KEY=VALUE, got {stripped!r}")
            try:
                validate_config_key(key)
            except InvalidInput as exc:
                raise self.error(exc.message) from None
            # Rewind to the first character of the value in the original text, because a
            # quoted value may continue past this line.
            self.pos = self.text.index("=", self.pos) + 1
            self._skip_blanks()
            value = self._value(after.lstrip())
            try:
                values[key] = validate_config_value(key, value)
            except InvalidInput as exc:
                raise self.error(exc.message, start_line) from None
            self._newline()
        return values

    # -- scanning ----------------------------------------------------------------------

    def _read_line_rest(self) -> str:
        end = self.text.find("\n", self.pos)
        return self.text[self.pos : len(self.text) if end < 0 else end]

    def _newline(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end + 1
        self.line += 1

    def _skip_blanks(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def _value(self, rest_of_line: str) -> str:
        if rest_of_line[:1] in ("'", '"'):
            quote = rest_of_line[0]
            self.pos += 1
            value = self._quoted(quote)
            self._expect_end_of_line()
            return value
        # Unquoted: up to the end of the line, minus a ` #` comment.
        value = rest_of_line
        for i, ch in enumerate(value):
            if ch == "#" and i > 0 and value[i - 1] in " \t":
                value = value[:i]
                break
        return value.strip()

    def _quoted(self, quote: str) -> str:
        start_line = self.line
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == quote:
                self.pos += 1
                return "".join(out)
            if ch == "\n":
                self.line += 1
            if ch == "\\" and quote == '"' and self.pos + 1 < len(self.text):
                nxt = self.text[self.pos + 1]
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
                if nxt == "\n":
                    self.line += 1
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1
        raise self.error(f"unterminated {quote} quote", start_line)

    def _expect_end_of_line(self) -> None:
        rest = self._read_line_rest().strip()
        if rest and not rest.startswith("#"):
            raise self.error(f"unexpected text after the closing quote: {rest!r}")
