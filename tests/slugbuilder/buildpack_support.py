"""Write small buildpacks for slug builder tests: `bin/<phase>` scripts from text.

bp = write_buildpack(tmp_path, "fails", {"detect": sh("exit 1")})
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nomadpaas.slugbuilder.buildpacks import Buildpack


def sh(body: str) -> str:
    """A /bin/sh script running `body`."""
    return "#!/bin/sh\n" + body + "\n"


def bash(body: str) -> str:
    """A bash script running `body`, stopping at the first failure or unset variable."""
    return "#!/usr/bin/env bash\nset -eu\n" + body + "\n"


#: The cache tests' bin/release: `web: echo hi`, or exit 1 when the app has a file FAIL.
RELEASE_UNLESS_FAIL = bash(
    "[ ! -f \"$1/FAIL\" ] || exit 1\nprintf 'default_process_types:\\n  web: echo hi\\n'"
)


def write_buildpack(
    root: Path, name: str, scripts: Mapping[str, str], mode: int = 0o755
) -> Buildpack:
    """`root/name/bin/<phase>` for each phase in `scripts`, with that text and `mode`."""
    bin_dir = root / name / "bin"
    bin_dir.mkdir(parents=True)
    for phase, text in scripts.items():
        script = bin_dir / phase
        script.write_text(text)
        script.chmod(mode)
    return Buildpack(name=name, path=root / name)
