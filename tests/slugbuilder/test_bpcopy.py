"""The build's copy of the buildpacks dir: hard links into a checked node-local snapshot,
never into the installed buildpacks; a plain copy otherwise."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nomadpaas.slugbuilder import BuildRequest, bpcopy, build_slug
from nomadpaas.slugbuilder.bpcopy import SNAPSHOTS_DIR, copy_buildpacks, snapshot_root


def _installed(root: Path) -> Path:
    """A small buildpacks dir: two buildpacks, a shared lib, a symlink."""
    for name in ("one", "two"):
        (root / name / "bin").mkdir(parents=True)
        for phase in ("detect", "compile"):
            script = root / name / "bin" / phase
            script.write_text(f"#!/bin/sh\necho {name} {phase}\n")
            script.chmod(0o755)
    (root / "lib").mkdir()
    (root / "lib" / "output.sh").write_text('step() { echo "-----> $*"; }\n')
    (root / "lib" / "readonly.txt").write_text("r\n")
    (root / "lib" / "readonly.txt").chmod(0o444)
    (root / "two" / "lib").symlink_to("../lib")
    return root


def _tree(root: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Every entry under `root`: (mode, content / link target / None for directories)."""
    out: dict[str, tuple[int, bytes | str | None]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = (0, os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = (stat.S_IMODE(st.st_mode), None)
        else:
            out[rel] = (stat.S_IMODE(st.st_mode), path.read_bytes())
    return out


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    return _installed(tmp_path / "installed")


@pytest.fixture
def snapshots(tmp_path: Path) -> Path:
    (tmp_path / "node-cache").mkdir()
    return tmp_path / "node-cache" / SNAPSHOTS_DIR


def _snapshot(snapshots: Path) -> Path:
    (only,) = list(snapshots.iterdir())
    return only


def test_without_a_node_cache_it_is_a_plain_copy(installed: Path, tmp_path: Path) -> None:
    dest = tmp_path / "work" / "buildpacks"
    dest.parent.mkdir()
    assert copy_buildpacks(str(installed), str(dest), None) is False
    assert _tree(dest) == _tree(installed)
    script = dest / "one" / "bin" / "compile"
    assert script.stat().st_ino != (installed / "one" / "bin" / "compile").stat().st_ino
    assert (installed / "one" / "bin" / "compile").stat().st_nlink == 1


def test_with_a_node_cache_files_are_links_into_the_snapshot_never_the_installed_files(
    installed: Path, snapshots: Path, tmp_path: Path
) -> None:
    (tmp_path / "work").mkdir()
    for n in range(2):
        dest = tmp_path / "work" / f"buildpacks{n}"
        assert copy_buildpacks(str(installed), str(dest), str(snapshots)) is True
        assert _tree(dest) == _tree(installed)
    snapshot = _snapshot(snapshots)
    assert _tree(snapshot) == _tree(installed)
    for rel in ("one/bin/compile", "lib/output.sh", "lib/readonly.txt"):
        linked = (tmp_path / "work" / "buildpacks1" / rel).stat()
        assert linked.st_ino == (snapshot / rel).stat().st_ino
        assert (installed / rel).stat().st_nlink == 1  # never linked
    assert (tmp_path / "work" / "buildpacks1" / "two" / "lib").is_symlink()


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p: p.write_text("#!/bin/sh\necho rewritten\n"), id="rewrite"),
        pytest.param(lambda p: p.open("a").write("# appended\n"), id="append"),
        pytest.param(lambda p: p.chmod(0o700), id="chmod"),
    ],
)
def test_a_buildpack_rewriting_its_own_file_changes_neither_the_installed_one_nor_later_builds(
    installed: Path, snapshots: Path, tmp_path: Path, tamper: object
) -> None:
    (tmp_path / "work1").mkdir()
    (tmp_path / "work2").mkdir()
    pristine = _tree(installed)
    first = tmp_path / "work1" / "buildpacks"
    copy_buildpacks(str(installed), str(first), str(snapshots))
    tamper(first / "one" / "bin" / "compile")  # type: ignore[operator]
    assert _tree(installed) == pristine

    second = tmp_path / "work2" / "buildpacks"
    assert copy_buildpacks(str(installed), str(second), str(snapshots)) is True
    assert _tree(second) == pristine
    assert _tree(_snapshot(snapshots)) == pristine
    # The tampered snapshot went into that build's work dir, out of the node cache.
    assert (tmp_path / "work2" / "buildpacks.stale-snapshot" / "one" / "bin").is_dir()


def test_an_upgrade_of_the_installed_buildpacks_makes_a_new_snapshot(
    installed: Path, snapshots: Path, tmp_path: Path
) -> None:
    (tmp_path / "w").mkdir()
    copy_buildpacks(str(installed), str(tmp_path / "w" / "a"), str(snapshots))
    script = installed / "two" / "bin" / "compile"
    script.write_text("#!/bin/sh\necho two compile, version 2\n")
    os.utime(script, ns=(0, 12_345_000_000_000))
    (installed / "three" / "bin").mkdir(parents=True)
    (installed / "three" / "bin" / "detect").write_text("#!/bin/sh\nexit 1\n")
    dest = tmp_path / "w" / "b"
    assert copy_buildpacks(str(installed), str(dest), str(snapshots)) is True
    assert _tree(dest) == _tree(installed)
    assert "version 2" in (dest / "two" / "bin" / "compile").read_text()


def test_a_failure_while_linking_falls_back_to_a_plain_copy(
    installed: Path, snapshots: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "w").mkdir()
    copy_buildpacks(str(installed), str(tmp_path / "w" / "a"), str(snapshots))

    def no_links(*_args: object, **_kwargs: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    dest = tmp_path / "w" / "b"
    assert copy_buildpacks(str(installed), str(dest), str(snapshots)) is False
    assert _tree(dest) == _tree(installed)


def test_leftovers_of_an_interrupted_build_in_the_same_work_dir_are_cleared(
    installed: Path, snapshots: Path, tmp_path: Path
) -> None:
    (tmp_path / "w").mkdir()
    dest = tmp_path / "w" / "buildpacks"
    for leftover in ("buildpacks.new-snapshot", "buildpacks.stale-snapshot"):
        (tmp_path / "w" / leftover / "half").mkdir(parents=True)
    assert copy_buildpacks(str(installed), str(dest), str(snapshots)) is True
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["buildpacks"]
    assert _tree(dest) == _tree(installed)


def test_only_a_few_snapshots_are_kept(snapshots: Path, tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    for n in range(bpcopy.MAX_SNAPSHOTS + 2):
        source = _installed(tmp_path / f"installed{n}")
        copy_buildpacks(str(source), str(tmp_path / "w" / f"b{n}"), str(snapshots))
    assert len(list(snapshots.iterdir())) == bpcopy.MAX_SNAPSHOTS


def test_snapshot_root(tmp_path: Path) -> None:
    assert snapshot_root({}) is None
    assert snapshot_root({"NOMADPAAS_BUILD_CACHE_DIR": "relative/dir"}) is None
    assert snapshot_root({"NOMADPAAS_BUILD_CACHE_DIR": "${meta.nomadpaas.x}"}) is None
    assert snapshot_root({"NOMADPAAS_BUILD_CACHE_DIR": str(tmp_path / "missing")}) is None
    assert snapshot_root({"NOMADPAAS_BUILD_CACHE_DIR": str(tmp_path)}) == str(
        tmp_path / SNAPSHOTS_DIR
    )


def test_builds_with_a_node_cache_keep_the_installed_buildpacks_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A buildpack that writes `export` and appends to its own compile: the installed
    one and the next build see neither."""
    installed = tmp_path / "bps"
    (installed / "selfish" / "bin").mkdir(parents=True)
    scripts = {
        "detect": "#!/bin/sh\necho Selfish\n",
        "compile": (
            '#!/bin/sh\nBP=$(cd "$(dirname "$0")/.." && pwd)\n'
            'echo "-----> compiling, $(grep -c "^#T$" "$0") earlier tampering"\n'
            'echo "export SELFISH=1" > "$BP/export"\n'
            'echo "#T" >> "$0"\n'
        ),
        "release": "#!/bin/sh\necho 'default_process_types:'; echo '  web: echo hi'\n",
    }
    for phase, text in scripts.items():
        (installed / "selfish" / "bin" / phase).write_text(text)
        (installed / "selfish" / "bin" / phase).chmod(0o755)
    pristine = _tree(installed)
    (tmp_path / "node").mkdir()
    monkeypatch.setenv("NOMADPAAS_BUILD_CACHE_DIR", str(tmp_path / "node"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.txt").write_text("hi\n")
    for n in range(2):
        lines: list[str] = []
        build_slug(
            BuildRequest(
                source=src,
                work_dir=tmp_path / f"work{n}",
                cache_dir=tmp_path / "cache",
                output_dir=tmp_path / f"out{n}",
                buildpacks_dir=installed,
                config={"BUILDPACK_URL": "selfish"},
            ),
            log=lines.append,
        )
        assert "-----> compiling, 0 earlier tampering" in lines
        copy = tmp_path / f"work{n}" / "buildpacks" / "selfish"
        assert (copy / "export").read_text() == "export SELFISH=1\n"
        assert (copy / "bin" / "compile").read_text().endswith("\n#T\n")
        assert _tree(installed) == pristine
    assert (tmp_path / "node" / SNAPSHOTS_DIR).is_dir()
    env_dir = tmp_path / "work1" / "env"
    assert stat.S_IMODE(env_dir.stat().st_mode) == 0o700


def test_an_export_left_in_the_installed_dir_is_copied_not_linked(
    installed: Path, snapshots: Path, tmp_path: Path
) -> None:
    (installed / "one" / "export").write_text("export LEFT=over\n")
    (tmp_path / "w").mkdir()
    for name in ("a", "b"):
        copy_buildpacks(str(installed), str(tmp_path / "w" / name), str(snapshots))
    ours = tmp_path / "w" / "b" / "one" / "export"
    assert ours.read_text() == "export LEFT=over\n"
    assert ours.stat().st_nlink == 1  # compile's `>` into it reaches nobody else
    assert (tmp_path / "w" / "b" / "one" / "bin" / "detect").stat().st_nlink > 1


def test_a_snapshot_that_does_not_come_out_equal_is_used_as_the_build_s_own_copy(
    installed: Path, snapshots: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """E.g. a file system with coarser times than the installed one's: no snapshot is
    kept, and the build pays one copy, not two."""
    real_utime = os.utime
    monkeypatch.setattr(os, "utime", lambda path, **_kw: real_utime(path, ns=(0, 1_000)))
    (tmp_path / "w").mkdir()
    dest = tmp_path / "w" / "buildpacks"
    assert copy_buildpacks(str(installed), str(dest), str(snapshots)) is False
    monkeypatch.setattr(os, "utime", real_utime)
    assert _tree(dest) == _tree(installed)
    assert not snapshots.exists() or not list(snapshots.iterdir())
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["buildpacks"]
