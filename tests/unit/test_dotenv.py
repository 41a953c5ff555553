"""The dotenv parser and K=V pairs: quoting, escapes, comments, errors with line numbers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nomadpaas.dotenv import format_dotenv, parse_dotenv, parse_pairs
from nomadpaas.errors import InvalidInput


def test_pairs_split_at_the_first_equals_sign() -> None:
    assert parse_pairs(["A=1", "B==x", "C=", "D=a=b"]) == {"A": "1", "B": "=x", "C": "", "D": "a=b"}


def test_pairs_later_values_win() -> None:
    assert parse_pairs(["A=1", "A=2"]) == {"A": "2"}


@pytest.mark.parametrize("arg", ["A", "=1", "1A=x", "A-B=1"])
def test_bad_pairs_raise_invalid_input(arg: str) -> None:
    with pytest.raises(InvalidInput):
        parse_pairs([arg])


DOTENV = r"""
# a comment
A=1
export B = two words  # trailing comment
C='single # not a comment \n literal'
D="double \"quoted\"\nnext\tTab \\ \$HOME"
E=url#fragment
F=
   G   =   spaced
H="multi
line"
I='multi
line too'  # ok
J=last
"""


def test_dotenv_full_grammar() -> None:
    assert parse_dotenv(DOTENV) == {
        "A": "1",
        "B": "two words",
        "C": "single # not a comment \\n literal",
        "D": 'double "quoted"\nnext\tTab \\ $HOME',
        "E": "url#fragment",
        "F": "",
        "G": "spaced",
        "H": "multi\nline",
        "I": "multi\nline too",
        "J": "last",
    }


def test_dotenv_crlf_and_no_trailing_newline() -> None:
    assert parse_dotenv("A=1\r\nB=2") == {"A": "1", "B": "2"}


def test_dotenv_unknown_escapes_are_kept() -> None:
    assert parse_dotenv(r'A="a\qb"') == {"A": r"a\qb"}


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("A=1\nnot a pair\n", 2, "expected KEY=VALUE"),
        ("A=1\n\n1BAD=2\n", 3, "1BAD"),
        ('A=1\nB="open\nC=3\n', 2, "unterminated"),
        ("A='x' junk\n", 1, "after the closing quote"),
        ('A="ok"\nB="x"y\n', 2, "after the closing quote"),
        ('A="multi\nline"\nB=1\nC\n', 4, "expected KEY=VALUE"),
    ],
)
def test_dotenv_errors_name_source_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_dotenv(text, source="app.env")
    assert info.value.message.startswith(f"app.env:{line}: ")
    assert words in info.value.message


KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
VALUES = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=40)


@given(st.dictionaries(KEYS, VALUES, max_size=8))
@settings(max_examples=100, deadline=None, derandomize=True, database=None)
def test_format_then_parse_is_the_identity(values: dict[str, str]) -> None:
    assert parse_dotenv(format_dotenv(values)) == values


def test_format_escapes_what_double_quotes_interpret() -> None:
    assert format_dotenv({"B": 'a"b\\c$d\ne', "A": "x"}) == 'A="x"\nB="a\\"b\\\\c\\$d\\ne"\n'
