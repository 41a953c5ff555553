"""What buildpacks get from the build: their process environment and ENV_DIR.

The process environment is the build task's own variables that are safe to pass on
(`_PASSTHROUGH`), plus HOME, STACK, SOURCE_VERSION and REQUEST_ID; the app's config vars
reach buildpacks only as ENV_DIR files, one per variable (reference/buildpacks.md §1.2).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

from nomadpaas.slugbuilder.buildlog import Log, warn
from nomadpaas.slugbuilder.models import BuildRequest

__all__ = ["ENV_NAME_RE", "buildpack_env", "write_env_dir"]

#: A name a shell can `export`: config vars with another name are not given to the build.
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The build task's own variables that buildpacks may see; anything else (credentials,
# presigned URLs) stays out. UV_*/PIP_*/npm_config_* are the operator's installer settings.
# NOMADPAAS_BUILD_CACHE_DIR (the node-local cache, node meta): the python buildpack keeps
# facts about the node's interpreter there, shared by every app's builds on the node.
_PASSTHROUGH = (
    "PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy",
    "https_proxy", "no_proxy", "NOMADPAAS_PYTHON", "NOMADPAAS_NO_UV",
    "NOMADPAAS_BUILD_CACHE_DIR",
)  # fmt: skip
_PASSTHROUGH_PREFIXES = ("UV_", "PIP_", "npm_config_", "NPM_CONFIG_")


def buildpack_env(request: BuildRequest, home: str) -> dict[str, str]:
    """The environment every buildpack phase runs with; makes `home`, its HOME."""
    os.makedirs(home)
    env = {
        k: v
        for k, v in os.environ.items()
        if k in _PASSTHROUGH or k.startswith(_PASSTHROUGH_PREFIXES)
    }
    # When the project's venv ships uv, put it on PATH for the python buildpack.
    venv_bin = os.path.dirname(sys.executable) or "."
    if os.path.exists(os.path.join(venv_bin, "uv")):
        env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', os.defpath)}"
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    env.update(HOME=home, STACK=request.stack)
    if request.commit:
        env["SOURCE_VERSION"] = request.commit
    if request.build_id:
        env["REQUEST_ID"] = request.build_id
    return env


def write_env_dir(env_dir: str, config: Mapping[str, str], emit: Log, warnings: list[str]) -> None:
    """One file per config var in `env_dir` (made, mode 0700, by the preparation thread)."""
    for name, value in config.items():
        if ENV_NAME_RE.fullmatch(name) is None:
            warn(emit, warnings, f"config var {name!r} is not a valid name; not given to the build")
            continue
        with open(os.path.join(env_dir, name), "w") as f:
            f.write(value)
