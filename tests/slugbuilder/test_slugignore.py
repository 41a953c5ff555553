"""`.slugignore` is applied to the build dir before the buildpacks run."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomadpaas.slugbuilder.slugignore import apply_slugignore, parse_slugignore


def _tree(root: Path, paths: list[str]) -> None:
    for rel in paths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)


def _remaining(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


FILES = [
    "Procfile", "app.py", "docs/index.md", "src/docs/keep.md", "src/big.psd", "big.psd",
    "assets/raw/a.png", "assets/final/a.png", "tmp/x", "lib/tmp", "a/b/c/cache/z", ".git/HEAD",
]  # fmt: skip


@pytest.mark.parametrize(
    ("ignore", "removed"),
    [
        ("", {".git/HEAD"}),
        ("*.psd\n", {"big.psd", "src/big.psd", ".git/HEAD"}),
        ("/docs\n", {"docs/index.md", ".git/HEAD"}),
        ("docs\n", {"docs/index.md", "src/docs/keep.md", ".git/HEAD"}),
        ("assets/raw\n", {"assets/raw/a.png", ".git/HEAD"}),
        ("tmp/\n", {"tmp/x", ".git/HEAD"}),  # dir-only: lib/tmp is a file and stays
        ("**/cache\n", {"a/b/c/cache/z", ".git/HEAD"}),
        ("# comment\n\n!app.py\n", {".git/HEAD"}),
    ],
)
def test_patterns(tmp_path: Path, ignore: str, removed: set[str]) -> None:
    _tree(tmp_path, FILES)
    (tmp_path / ".slugignore").write_text(ignore)
    before = _remaining(tmp_path)
    apply_slugignore(tmp_path)
    assert before - _remaining(tmp_path) == removed


def test_negation_and_escapes_are_warned_not_applied() -> None:
    patterns, warnings = parse_slugignore("!keep\n../outside\n*.log\n")
    assert [p.text for p in patterns] == ["*.log"]
    assert len(warnings) == 2 and "line 1" in warnings[0] and "line 2" in warnings[1]


def test_symlinks_are_removed_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("x")
    app = tmp_path / "app"
    app.mkdir()
    (app / "link").symlink_to(outside, target_is_directory=True)
    (app / ".slugignore").write_text("link\n")
    result = apply_slugignore(app)
    assert result.removed == ("link",)
    assert (outside / "precious").exists()
