"""Procfile parsing rules (reference/buildpacks.md §2.4), table-driven."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nomadpaas.errors import InvalidInput
from nomadpaas.procfile import (
    ProcfileError,
    is_dns_label,
    parse_procfile,
    render_procfile,
)

VALID = [
    ("empty file", "", {}),
    ("one web", "web: gunicorn app:app\n", {"web": "gunicorn app:app"}),
    (
        "comments and blank lines",
        "# a comment\n\nweb: python app.py\n   # indented comment\n\nworker: celery -A x\n",
        {"web": "python app.py", "worker": "celery -A x"},
    ),
    ("commented-out release never counts", "web: a\n#release: migrate\n", {"web": "a"}),
    ("commented release with spaces", "web: a\n  # release: migrate\n", {"web": "a"}),
    ("no space after colon", "web:python app.py", {"web": "python app.py"}),
    ("leading spaces before name", "   web: x", {"web": "x"}),
    ("spaces around command stripped", "web:    x y   \n", {"web": "x y"}),
    (
        "colons inside the command",
        "web: gunicorn a:b --bind 0:$PORT",
        {"web": "gunicorn a:b --bind 0:$PORT"},
    ),
    ("CRLF line ends", "web: a\r\nworker: b\r\n", {"web": "a", "worker": "b"}),
    ("BOM", "\ufeffweb: a\n", {"web": "a"}),
    (
        "shell syntax kept verbatim",
        "web: cd x && exec y ${PORT:-8000} # note",
        {"web": "cd x && exec y ${PORT:-8000} # note"},
    ),
    (
        "release is a normal entry",
        "release: ./migrate\nweb: a",
        {"release": "./migrate", "web": "a"},
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), VALID, ids=[c[0] for c in VALID])
def test_valid_procfiles(case: str, text: str, expected: dict[str, str]) -> None:
    procfile = parse_procfile(text)
    assert procfile.processes == expected
    assert list(procfile.processes) == list(expected)  # file order is kept


INVALID = [
    ("merge conflict marker", "web: a\n<<<<<<< HEAD\n", [(2, "expected `name: command`")]),
    ("a stray word", "web: a\n\nnonsense\n", [(3, "expected `name: command`")]),
    ("empty command", "web:\n", [(1, "empty command")]),
    ("blank command", "worker:    \n", [(1, "empty command")]),
    ("bad name characters", "we b: x\n", [(1, "expected `name: command`")]),
    ("dot in name", "web.1: x\n", [(1, "expected `name: command`")]),
    ("empty name", ": x\n", [(1, "expected `name: command`")]),
    ("duplicate", "web: a\nworker: w\nweb: b\n", [(3, "defined twice (first on line 1)")]),
    (
        "every error is reported",
        "web: a\n=======\nworker:\nweb: c\n",
        [(2, "expected"), (3, "empty command"), (4, "defined twice")],
    ),
]


@pytest.mark.parametrize(("case", "text", "problems"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_procfiles_name_their_lines(
    case: str, text: str, problems: list[tuple[int, str]]
) -> None:
    with pytest.raises(ProcfileError) as info:
        parse_procfile(text)
    error = info.value
    assert isinstance(error, InvalidInput) and error.exit_code == 2
    assert [(p.line,) for p in error.problems] == [(line,) for line, _ in problems]
    for problem, (line, fragment) in zip(error.problems, problems, strict=True):
        assert fragment in problem.message
        assert f"line {line}: " in error.message
    assert error.hint


WARNED = [
    ("underscore", "my_worker: x", "my_worker"),
    ("uppercase", "Web: x", "Web"),
    ("leading dash", "-web: x", "-web"),
    ("too long", "a" * 64 + ": x", "a" * 64),
]


@pytest.mark.parametrize(("case", "text", "name"), WARNED, ids=[c[0] for c in WARNED])
def test_non_dns_names_are_accepted_with_a_warning(case: str, text: str, name: str) -> None:
    procfile = parse_procfile(text)
    assert name in procfile.processes
    assert len(procfile.warnings) == 1
    assert procfile.warnings[0].line == 1
    assert "DNS label" in procfile.warnings[0].message


def test_dns_names_give_no_warning() -> None:
    assert parse_procfile("web: a\nworker-2: b\n" + "a" * 63 + ": c").warnings == ()


@pytest.mark.parametrize(
    ("name", "ok"),
    [("web", True), ("a", True), ("w-1", True), ("-w", False), ("w-", False), ("W", False),
     ("w_1", False), ("", False), ("a" * 63, True), ("a" * 64, False)],
)  # fmt: skip
def test_is_dns_label(name: str, ok: bool) -> None:
    assert is_dns_label(name) is ok


def test_has_web() -> None:
    assert parse_procfile("web: a").has_web
    assert not parse_procfile("worker: a").has_web


names = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
commands = (
    st.text(
        alphabet=st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"]),
        min_size=1,
        max_size=40,
    )
    .map(str.strip)
    .filter(bool)
)


@given(st.dictionaries(names, commands, max_size=6))
def test_render_then_parse_round_trips(processes: dict[str, str]) -> None:
    assert parse_procfile(render_procfile(processes)).processes == processes
