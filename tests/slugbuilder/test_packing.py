"""packing.py: the slug packed under its size limits, and slug.json written."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from nomadpaas.errors import BuildFailed
from nomadpaas.slugbuilder import packing
from nomadpaas.slugbuilder.models import SlugMetadata
from nomadpaas.slugbuilder.timings import Timings


def _pack(tmp_path: Path, lines: list[str], warnings: list[str]) -> packing.SlugPack:
    app = tmp_path / "app"
    if not app.exists():
        app.mkdir()
        (app / "Procfile").write_text("web: run\n")
    slug = tmp_path / "slug.tar.gz"
    return packing.pack_app(
        str(app), str(slug), str(tmp_path / "cache"), 0, lines.append, warnings, Timings()
    )


def test_the_slug_holds_the_app_under_app_with_its_digest_and_size(tmp_path: Path) -> None:
    lines: list[str] = []
    stats = _pack(tmp_path, lines, [])
    slug = (tmp_path / "slug.tar.gz").read_bytes()
    assert stats.sha256 == hashlib.sha256(slug).hexdigest()
    assert stats.compressed_bytes == len(slug)
    with tarfile.open(tmp_path / "slug.tar.gz") as tar:
        assert "./app/Procfile" in tar.getnames()
    assert lines == ["-----> Compressing...", f"       Done: {packing.mb(len(slug))}"]


def test_over_the_hard_limit_fails_and_over_the_soft_limit_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packing, "SLUG_SOFT_LIMIT_BYTES", 1)
    lines: list[str] = []
    warnings: list[str] = []
    _pack(tmp_path, lines, warnings)
    assert warnings == ["the slug is over 0.0 MB: slower starts"]
    assert f" !     Warning: {warnings[0]}" in lines
    monkeypatch.setattr(packing, "SLUG_HARD_LIMIT_BYTES", 1)
    with pytest.raises(BuildFailed, match=r"over the 0\.0 MB limit") as info:
        _pack(tmp_path, [], [])
    assert info.value.hint and ".slugignore" in info.value.hint


def test_slug_json_holds_the_metadata_fields_in_order(tmp_path: Path) -> None:
    metadata = SlugMetadata(
        process_types={"web": "run"}, buildpacks=["procfile"], buildpack_description="Procfile",
        stack="nomadpaas-1", sha256="ab", compressed_bytes=2, uncompressed_bytes=3, files=1,
        launcher="app/.nomadpaas/start", addons=[], commit=None, build_id="b", build_seconds=0.5,
        created_at="2026-01-01T00:00:00+00:00", warnings=["w"], md5="cd",
    )  # fmt: skip
    path = tmp_path / "slug.json"
    packing.write_metadata(metadata, str(path))
    text = path.read_text()
    assert text.endswith("}\n")
    loaded = json.loads(text)
    assert list(loaded) == list(SlugMetadata.__match_args__)
    assert loaded == metadata.to_dict()


def test_sizes_are_shown_in_mb() -> None:
    assert packing.mb(0) == "0.0 MB"
    assert packing.mb(5 * 1024**2 + 512 * 1024) == "5.5 MB"
