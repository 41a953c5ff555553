"""The import-linter seam "the library never imports the CLI" must name every library module.

import-linter cannot say "everything but nomadpaas.cli", so the contract lists the modules;
this test fails when a new top-level module is added without being listed there.
"""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import nomadpaas

ROOT = Path(__file__).resolve().parents[2]
NOT_LIBRARY = {"nomadpaas.cli", "nomadpaas.__main__"}


def _contract_sources(name_fragment: str) -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for contract in config["tool"]["importlinter"]["contracts"]:
        if name_fragment in contract["name"]:
            return set(contract["source_modules"])
    raise AssertionError(f"no import-linter contract named like {name_fragment!r}")


def test_library_contract_lists_every_top_level_module() -> None:
    modules = {f"nomadpaas.{m.name}" for m in pkgutil.iter_modules(nomadpaas.__path__)}
    library = modules - NOT_LIBRARY
    listed = _contract_sources("never imports the CLI")
    assert library - listed == set(), "add these to the contract in pyproject.toml"
    assert listed - modules == set(), "these contract entries name no module"
