"""`up` gives the embedded agent the node meta that turns on the node-local build cache."""

from __future__ import annotations

from pathlib import Path

from nomadpaas.slugbuilder.localcache import LocalCache
from nomadpaas.stack.embedded import BUILD_CACHE_META, _Ports, server_argv


def test_the_agent_gets_the_build_cache_dir_under_the_home(tmp_path: Path) -> None:
    argv = server_argv("agent", _Ports(nomad=1, consul=2, s3=3), tmp_path)
    assert argv[argv.index("-meta") + 1] == f"{BUILD_CACHE_META}={tmp_path / 'build-cache'}"
    # What the build task makes of the interpolated value: a usable cache root.
    value = argv[argv.index("-meta") + 1].split("=", 1)[1]
    cache = LocalCache.from_env(value)
    assert cache is not None and cache.root == str(tmp_path / "build-cache")
    assert "-meta" not in server_argv("s3", _Ports(nomad=1, consul=2, s3=3), tmp_path)
