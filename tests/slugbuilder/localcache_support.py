"""Builds of one app on a node with a node-local build cache, for the local cache tests:
the build task run in-process, its objects in a file:// bucket shared by every node."""

from __future__ import annotations

import tarfile
from pathlib import Path

from nomadpaas.slugbuilder.localcache import LocalCache
from nomadpaas.slugbuilder.task import BuildTask, FileTransfer, run_build_task
from nomadpaas.slugbuilder.timings import Timings

APP, STACK = "web", "nomadpaas-1"


class Node:
    """Builds of one app on one node with a local cache, objects in a file:// bucket."""

    def __init__(self, tmp_path: Path, buildpacks: Path, name: str = "node") -> None:
        self.tmp, self.buildpacks, self.name = tmp_path, buildpacks, name
        self.cache = LocalCache(tmp_path / name / "build-cache")
        self.bucket = tmp_path / "bucket"
        self.builds = 0

    @property
    def cache_object(self) -> Path:
        return self.bucket / "cache" / APP / f"{STACK}.tar.gz"

    @property
    def slot_dir(self) -> Path:
        return Path(self.cache.root) / APP / STACK

    @property
    def tree(self) -> Path:
        return self.slot_dir / "tree"

    def build(
        self, buildpack: str, *, fail: bool = False, bump: bool = False
    ) -> tuple[list[str], Timings]:
        """Build a fresh source (`hello.txt`; a file FAIL or BUMP when asked) with
        `buildpack` (BUILDPACK_URL); the log lines and the timings."""
        self.builds += 1
        key = f"{self.name}-{self.builds}"
        src = self.tmp / f"src-{key}"
        src.mkdir()
        (src / "hello.txt").write_text("hi")
        for flag, wanted in (("FAIL", fail), ("BUMP", bump)):
            if wanted:
                (src / flag).write_text("")
        tarball = self.bucket / "sources" / f"{key}.tar.gz"
        tarball.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball, "w:gz") as tar:
            tar.add(src, arcname=".")
        url = self.cache_object.as_uri()
        task = BuildTask(
            source_url=tarball.as_uri(),
            slug_url=(self.bucket / "slugs" / f"{key}.tar.gz").as_uri(),
            cache_url=url,
            cache_put_url=url,
            config={"BUILDPACK_URL": buildpack},
        )
        lines: list[str] = []
        timings = Timings()
        run_build_task(
            task, FileTransfer(), self.tmp / f"work-{key}", lines.append, self.buildpacks,
            timings, local=self.cache, app=APP,
        )  # fmt: skip
        return lines, timings
