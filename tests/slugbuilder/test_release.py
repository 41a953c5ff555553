"""The `bin/release` YAML subset, table-driven."""

from __future__ import annotations

import pytest

from nomadpaas.slugbuilder.release import ReleaseFormatError, ReleaseInfo, parse_release

CASES = [
    ("empty output", "", ReleaseInfo()),
    ("empty document", "--- {}\n", ReleaseInfo()),
    ("document markers only", "---\n...\n", ReleaseInfo()),
    (
        "node",
        "---\naddons: []\ndefault_process_types:\n  web: npm start\n",
        ReleaseInfo(default_process_types={"web": "npm start"}),
    ),
    (
        "heroku python with django",
        "---\naddons:\n  - heroku-postgresql\n",
        ReleaseInfo(addons=["heroku-postgresql"]),
    ),
    (
        "flow list and comments",
        "# made by a buildpack\naddons: [a, 'b']  \nconfig_vars: {}\n",
        ReleaseInfo(addons=["a", "b"]),
    ),
    (
        "quoted values keep shell syntax",
        "default_process_types:\n"
        '  web: \'ff --target "${T:-main}" --port "$PORT"\'\n'
        '  worker: "a \\"b\\" c"\n'
        "  clock: it''s plain # trailing comment\n",
        ReleaseInfo(
            default_process_types={
                "web": 'ff --target "${T:-main}" --port "$PORT"',
                "worker": 'a "b" c',
                "clock": "it''s plain",
            }
        ),
    ),
    (
        "config vars",
        "config_vars:\n  LANG: 'C.UTF-8'\n  PATH_EXTRA: /app/bin\n",
        ReleaseInfo(config_vars={"LANG": "C.UTF-8", "PATH_EXTRA": "/app/bin"}),
    ),
    ("empty block", "default_process_types:\naddons:\n", ReleaseInfo()),
    ("unknown keys ignored", "foo: bar\n", ReleaseInfo()),
]


@pytest.mark.parametrize(("case", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_parse_release(case: str, text: str, expected: ReleaseInfo) -> None:
    assert parse_release(text) == expected


BAD = [
    ("indented first line", "  web: x\n", "line 1"),
    ("missing colon", "default_process_types:\n  web npm start\n", "line 2"),
    ("unterminated quote", "default_process_types:\n  web: 'npm start\n", "line 2"),
    ("flow mapping", "config_vars: {A: b}\n", "flow mappings"),
    ("list where mapping expected", "default_process_types:\n  - web\n", "mapping"),
    ("text after quote", "addons:\n  - 'a' b\n", "line 2"),
]


@pytest.mark.parametrize(("case", "text", "fragment"), BAD, ids=[c[0] for c in BAD])
def test_bad_release_output(case: str, text: str, fragment: str) -> None:
    with pytest.raises(ReleaseFormatError, match=fragment):
        parse_release(text)
