"""The build task's start stays light: what `python -m nomadpaas.slugbuilder task` imports.

The task is a fresh process per push, so every module it imports is paid by every build.
Each check runs a fresh isolated interpreter without `site` (an editable install's
finder would import pathlib, re and more before us and hide what we import).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from testsupport import run_isolated_python

import nomadpaas

ROOT = str(Path(nomadpaas.__file__).resolve().parent.parent)
ENTRY = "nomadpaas.slugbuilder.__main__, nomadpaas.slugbuilder.dispatched"
#: What a build imports later on (extraction, buildpacks, packing, the local cache).
PIPELINE = (
    "nomadpaas.slugbuilder.task, nomadpaas.slugbuilder.fastextract, "
    "nomadpaas.slugbuilder.layers, nomadpaas.slugbuilder.localcache, "
    "nomadpaas.slugbuilder.http_transfer, nomadpaas.slugbuilder.archive"
)

#: Never imported by the task's modules, at start or later on its usual path.
NEVER = (
    "argparse",  # the local CLI's, not the task's
    "concurrent.futures",  # and with it logging: gzmember has its own thread pool
    "logging",
    "tempfile",  # random, weakref…: scratch.py makes the names
    "datetime",  # time.strftime does
    "http.client",  # email, ssl: http1.py speaks the little HTTP needed
    "email",
    "asyncio",
)
#: Needed only once the buildpacks compile (packing: OpenSSL's start, the deflate
#: threads), on the S3 cache path (tarfile's header check, GNU tar through subprocess),
#: for a source that is not plain (tarfile), to remove trees (shutil) or for https
#: (socket.py, ssl): imported then, not at the task's start. The buildpacks run through
#: spawn.py, plain http through `_socket` (http1.py), a pushed source is extracted by
#: plaintar.py; `nomadpaas` needs no importlib.
NOT_AT_START = (
    "hashlib",
    "_hashlib",
    "gzip",
    "nomadpaas.slugbuilder.layers",
    "nomadpaas.slugbuilder.gzmember",
    "nomadpaas.slugbuilder.packing",
    "subprocess",
    "signal",
    "locale",
    "socket",
    "selectors",
    "ssl",
    "importlib",
    "warnings",
    "tarfile",
    "shutil",
    "bz2",
    "lzma",
)
#: Not loaded at all by the task, whoever would ask: pathlib pulls in urllib.parse and
#: ipaddress, ~5 ms of every build's start; the task's paths are plain `os.path` strings.
NOT_IN_THE_TASK = ("pathlib", "urllib.parse", "ipaddress")
#: What the early GETs (early.py, imported first) must go out without: the pipeline.
NOT_BEFORE_EARLY_REQUESTS = (
    "json",
    "re",
    "pathlib",
    "shutil",
    "subprocess",
    "tarfile",
    "nomadpaas.errors",
    "nomadpaas.slugbuilder.dispatched",
    "nomadpaas.slugbuilder.compile",
)
#: Not imported by any slugbuilder module itself (other nomadpaas modules still may).
NOT_BY_SLUGBUILDER = ("dataclasses", "typing", "urllib.parse", "inspect", *NEVER)

_PROBE = """
import builtins, json, sys
sys.path.insert(0, {root!r})
watched = set({watched!r})
seen = []
real_import = builtins.__import__

def spy(name, globals=None, locals=None, fromlist=(), level=0):
    # Every import statement, also of a module already loaded: who asked for what.
    if level == 0 and name in watched:
        seen.append([name, (globals or {{}}).get("__name__", "?")])
    return real_import(name, globals, locals, fromlist, level)

builtins.__import__ = spy
import {entry}
print(json.dumps({{"seen": seen, "modules": sorted(sys.modules)}}))
"""


def _probe(entry: str, watched: tuple[str, ...]) -> dict[str, Any]:
    code = _PROBE.format(root=ROOT, watched=list(watched), entry=entry)
    loaded: dict[str, Any] = json.loads(run_isolated_python(code))
    return loaded


def _by_slugbuilder(loaded: dict[str, Any]) -> list[tuple[str, str]]:
    """The watched modules a slugbuilder module imported itself: (module, importer)."""
    return sorted(
        {
            (name, importer)
            for name, importer in loaded["seen"]
            if importer.startswith("nomadpaas.slugbuilder")
        }
    )


def test_the_task_entry_imports_none_of_the_heavy_modules() -> None:
    loaded = _probe(ENTRY, NOT_BY_SLUGBUILDER)
    assert not set(NEVER) & set(loaded["modules"])
    assert _by_slugbuilder(loaded) == []


def test_the_task_entry_loads_no_pathlib_nor_what_it_pulls_in() -> None:
    loaded = _probe(ENTRY, ())
    assert not set(NOT_IN_THE_TASK) & set(loaded["modules"])


def test_the_whole_pipeline_loads_no_pathlib() -> None:
    # Also later on: the build, packing and the cache only use `os.path` strings.
    loaded = _probe(f"{ENTRY}, {PIPELINE}", ())
    assert not set(NOT_IN_THE_TASK) & set(loaded["modules"])


def test_packing_modules_are_not_imported_at_the_task_s_start() -> None:
    # compile.py imports them in a thread while the buildpacks compile.
    loaded = _probe(ENTRY, ())
    assert not set(NOT_AT_START) & set(loaded["modules"])


def test_the_early_requests_go_out_before_the_pipeline_is_imported() -> None:
    loaded = _probe("nomadpaas.slugbuilder.early", NOT_BEFORE_EARLY_REQUESTS)
    assert "nomadpaas.slugbuilder.http1" in loaded["modules"]
    assert loaded["seen"] == []  # (the probe itself holds json and re: asked, not loaded)
    unseen = set(NOT_BEFORE_EARLY_REQUESTS) - {"json", "re"}
    assert not unseen & set(loaded["modules"])


def test_the_whole_pipeline_imports_none_of_the_heavy_modules() -> None:
    loaded = _probe(f"{ENTRY}, {PIPELINE}", NOT_BY_SLUGBUILDER)
    assert not set(NEVER) & set(loaded["modules"])
    assert _by_slugbuilder(loaded) == []


def test_the_package_does_not_import_the_pipeline_until_asked() -> None:
    # `-m nomadpaas.slugbuilder` imports the package first: it must stay an empty shell.
    loaded = _probe("nomadpaas.slugbuilder", ())
    assert "nomadpaas.slugbuilder.compile" not in loaded["modules"]
    code = f"import sys; sys.path.insert(0, {ROOT!r}); from nomadpaas.slugbuilder import build_slug"
    subprocess.run([sys.executable, "-I", "-S", "-c", code], check=True, timeout=60)


def test_the_spy_sees_an_import_from_slugbuilder() -> None:
    # The probe itself works: a slugbuilder module importing a watched module is seen.
    loaded = _probe("nomadpaas.slugbuilder.gzmember", ("threading",))
    assert ["threading", "nomadpaas.slugbuilder.gzmember"] in loaded["seen"]
