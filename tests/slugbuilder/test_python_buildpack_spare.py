"""The python buildpack takes its cached venv from the node cache's spare (one rename)
when the spare is this build's key and a clone of this very cache, and links it from the
cache otherwise (localcache.py makes the spare; the buildpack finds it at
"$CACHE_DIR.spare").

Real builds (build_slug with the repository's buildpacks, uv from the project's venv) of
an app whose requirements name no package: offline, and the venv is still a real venv.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nomadpaas.slugbuilder.localcache import CacheSlot, LocalCache, Tag

CACHE_HIT = "skipping the install (cache hit)"
pytestmark = pytest.mark.skipif(
    shutil.which("uv") is None and not (Path(sys.executable).parent / "uv").exists(),
    reason="uv is not installed",
)


def _source(tmp_path: Path, requirements: str = "# no packages\n") -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "requirements.txt").write_text(requirements)
    (src / "Procfile").write_text("web: python -V\n")
    return src


@pytest.fixture
def slot(tmp_path: Path) -> CacheSlot:
    """A node cache slot whose tree is the builds' CACHE_DIR (released by the test's end)."""
    found = LocalCache(tmp_path / "build-cache").acquire("web", "nomadpaas-1")
    assert found is not None
    found.reset_tree()
    return found


def _spare_for_next_build(slot: CacheSlot) -> Path:
    """What the build task does after a build: tag the tree, then clone it."""
    slot.record(Tag("http://s3/b/cache/web/nomadpaas-1.tar.gz", '"e1"', 1))
    assert slot.make_spare()
    return Path(slot.spare) / "python" / "slug"


def test_a_warm_build_takes_the_venv_and_profile_from_the_spare(
    build: Callable[..., Any], tmp_path: Path, slot: CacheSlot
) -> None:
    src = _source(tmp_path)
    cache = Path(slot.tree)
    assert build(src, cache_dir=cache).result is not None
    spare = _spare_for_next_build(slot)
    venv_dir = (spare / ".venv").stat().st_ino
    profile_dir = (spare / ".profile.d").stat().st_ino

    warm = build(src, cache_dir=cache)
    assert warm.result is not None and CACHE_HIT in warm.output
    app = tmp_path / "work1" / "app"
    # The very directories of the spare, renamed: none was created.
    assert (app / ".venv").stat().st_ino == venv_dir
    assert (app / ".profile.d").stat().st_ino == profile_dir
    assert not (spare / ".venv").exists() and not (spare / ".profile.d").exists()
    # Their files are the cache's own (as with `cp -al`), the cache is whole.
    cached = cache / "python" / "slug"
    for rel in ("pyvenv.cfg", ".nomadpaas-absolute-links"):
        assert (app / ".venv" / rel).stat().st_ino == (cached / ".venv" / rel).stat().st_ino
    profile = app / ".profile.d" / "python.sh"
    assert profile.stat().st_ino == (cached / ".profile.d" / "python.sh").stat().st_ino
    assert "VIRTUAL_ENV" in profile.read_text()

    # Without a spare the next warm build links from the cache: new directories, same files.
    slot.drop_spare()
    again = build(src, cache_dir=cache)
    assert again.result is not None and CACHE_HIT in again.output
    app2 = tmp_path / "work2" / "app"
    assert (app2 / ".venv").stat().st_ino not in (venv_dir, (cached / ".venv").stat().st_ino)
    cfg = (app2 / ".venv" / "pyvenv.cfg").stat().st_ino
    assert cfg == (cached / ".venv" / "pyvenv.cfg").stat().st_ino
    slot.release()


def test_a_spare_of_another_key_or_another_install_is_not_used(
    build: Callable[..., Any], tmp_path: Path, slot: CacheSlot
) -> None:
    src = _source(tmp_path)
    cache = Path(slot.tree)
    assert build(src, cache_dir=cache).result is not None
    spare = _spare_for_next_build(slot)
    key = Path(slot.spare) / "python" / "key"
    text = key.read_text()
    key.unlink()  # replaced, not rewritten: it is a link to the cache's key
    key.write_text(text.replace("# no packages", "# other packages"))
    venv_dir = (spare / ".venv").stat().st_ino

    warm = build(src, cache_dir=cache)
    assert warm.result is not None and CACHE_HIT in warm.output
    assert (tmp_path / "work1" / "app" / ".venv").stat().st_ino != venv_dir
    assert (spare / ".venv").stat().st_ino == venv_dir  # left alone

    # The right key, but a venv that is not this cache's files (a copy): not used either.
    spare = _spare_for_next_build(slot)
    cfg = spare / ".venv" / "pyvenv.cfg"
    data = cfg.read_bytes()
    cfg.unlink()
    cfg.write_bytes(data)
    venv_dir = (spare / ".venv").stat().st_ino
    warm = build(src, cache_dir=cache)
    assert warm.result is not None and CACHE_HIT in warm.output
    assert (tmp_path / "work2" / "app" / ".venv").stat().st_ino != venv_dir
    assert (spare / ".venv").stat().st_ino == venv_dir

    # A changed requirements.txt is a miss: the spare (of the old key) is not touched.
    spare = _spare_for_next_build(slot)
    venv_dir = (spare / ".venv").stat().st_ino
    _source(tmp_path, "# changed\n")
    miss = build(src, cache_dir=cache)
    assert miss.result is not None and CACHE_HIT not in miss.output
    assert (tmp_path / "work3" / "app" / ".venv").stat().st_ino != venv_dir
    assert (spare / ".venv").stat().st_ino == venv_dir
    slot.release()


def test_an_app_with_its_own_profile_d_gets_only_the_venv_from_the_spare(
    build: Callable[..., Any], tmp_path: Path, slot: CacheSlot
) -> None:
    src = _source(tmp_path)
    (src / ".profile.d").mkdir()
    (src / ".profile.d" / "app.sh").write_text("export FROM_APP=1\n")
    cache = Path(slot.tree)
    assert build(src, cache_dir=cache).result is not None
    spare = _spare_for_next_build(slot)
    venv_dir = (spare / ".venv").stat().st_ino

    warm = build(src, cache_dir=cache)
    assert warm.result is not None and CACHE_HIT in warm.output
    app = tmp_path / "work1" / "app"
    assert (app / ".venv").stat().st_ino == venv_dir
    assert (spare / ".profile.d" / "python.sh").is_file()  # not taken: the app has its own
    assert sorted(p.name for p in (app / ".profile.d").iterdir()) == ["app.sh", "python.sh"]
    assert "VIRTUAL_ENV" in (app / ".profile.d" / "python.sh").read_text()
    slot.release()
