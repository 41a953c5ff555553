"""get_artifact against a real local HTTP server: URL preparation, archives, checksums."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from agent.client.getter.archive_factory import directory, file, make_tar, symlink

from nomadpaas.agent.client.getter.getter import (
    ArtifactError,
    GetterConfig,
    get_artifact,
    prepare_url,
)


@dataclass
class FakeSite:
    """Files by path; every request's path+query and headers are recorded."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


@pytest.fixture
def site() -> Iterator[FakeSite]:
    state = FakeSite()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, dict(self.headers.items())))
            path = urlsplit(self.path).path
            if path == "/boom":
                self.send_error(503)
                return
            body = state.files.get(path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def alloc(tmp_path: Path) -> Path:
    root = tmp_path / "alloc-root"
    (root / "web" / "local").mkdir(parents=True)
    (root / "alloc").mkdir()
    return root


def fetch(alloc: Path, source: str, **fields: Any) -> None:
    artifact = {"GetterSource": source, **fields}
    get_artifact(artifact, alloc / "web", alloc, {"NOMAD_X": "x"})


def tarball(tmp_path: Path) -> bytes:
    entries = [directory("app"), file("app/run.sh", b"echo hi"), symlink("app/r", "run.sh")]
    return make_tar(tmp_path / "build.tgz", entries).read_bytes()


def test_plain_file_is_saved_under_its_last_path_element(site: FakeSite, alloc: Path) -> None:
    site.files["/files/conf.txt"] = b"hello"
    fetch(alloc, site.base + "/files/conf.txt")
    assert (alloc / "web/local/conf.txt").read_bytes() == b"hello"


def test_filename_param_renames_and_is_not_sent(site: FakeSite, alloc: Path) -> None:
    site.files["/f"] = b"data"
    fetch(alloc, site.base + "/f?filename=renamed.bin")
    assert (alloc / "web/local/renamed.bin").read_bytes() == b"data"
    assert site.requests[-1][0] == "/f"


def test_options_join_the_query_sorted_and_headers_are_sent(site: FakeSite, alloc: Path) -> None:
    site.files["/f.txt"] = b"1"
    fetch(alloc, site.base + "/f.txt?zeta=2&b=1", GetterOptions={"a": "x y", "archive": "false"},
          GetterHeaders={"X-Token": "${NOMAD_X}"})  # fmt: skip
    path, headers = site.requests[-1]
    assert path == "/f.txt?a=x+y&b=1&zeta=2"
    assert headers["X-Token"] == "x"


def test_tarball_is_unpacked_with_in_tree_symlink(
    site: FakeSite, alloc: Path, tmp_path: Path
) -> None:
    site.files["/rel/app.tar.gz"] = tarball(tmp_path)
    fetch(alloc, site.base + "/rel/app.tar.gz")
    assert (alloc / "web/local/app/r").read_text() == "echo hi"


def test_presigned_style_url_unpacks_by_path_suffix(
    site: FakeSite, alloc: Path, tmp_path: Path
) -> None:
    site.files["/b/app.tgz"] = tarball(tmp_path)
    fetch(alloc, site.base + "/b/app.tgz?X-Amz-Signature=ab%2Fc&X-Amz-Credential=K%2F2026",
          RelativeDest="local/slug")  # fmt: skip
    assert (alloc / "web/local/slug/app/run.sh").exists()
    assert site.requests[-1][0] == "/b/app.tgz?X-Amz-Credential=K%2F2026&X-Amz-Signature=ab%2Fc"


def test_archive_false_keeps_the_file(site: FakeSite, alloc: Path, tmp_path: Path) -> None:
    site.files["/app.tar.gz"] = tarball(tmp_path)
    fetch(alloc, site.base + "/app.tar.gz?archive=false")
    assert (alloc / "web/local/app.tar.gz").read_bytes() == site.files["/app.tar.gz"]
    assert site.requests[-1][0] == "/app.tar.gz"


def test_archive_param_forces_a_format(site: FakeSite, alloc: Path, tmp_path: Path) -> None:
    site.files["/download"] = tarball(tmp_path)
    fetch(alloc, site.base + "/download?id=7", GetterOptions={"archive": "tgz"})
    assert (alloc / "web/local/app/run.sh").exists()
    assert site.requests[-1][0] == "/download?id=7"


@pytest.mark.parametrize("algo", ["md5", "sha1", "sha256", "sha512"])
def test_checksum_match_passes(site: FakeSite, alloc: Path, algo: str) -> None:
    site.files["/f.txt"] = b"payload"
    digest = hashlib.new(algo, b"payload").hexdigest()
    fetch(alloc, site.base + f"/f.txt?checksum={algo}:{digest}")
    assert (alloc / "web/local/f.txt").read_bytes() == b"payload"


def test_checksum_mismatch_names_both_sums_and_writes_nothing(
    site: FakeSite, alloc: Path, tmp_path: Path
) -> None:
    site.files["/app.tar.gz"] = tarball(tmp_path)
    wrong = "0" * 64
    actual = hashlib.sha256(site.files["/app.tar.gz"]).hexdigest()
    with pytest.raises(ArtifactError) as info:
        fetch(alloc, site.base + "/app.tar.gz", GetterOptions={"checksum": f"sha256:{wrong}"})
    assert f"Expected: sha256:{wrong}" in info.value.message
    assert f"Got: sha256:{actual}" in info.value.message
    assert info.value.message.startswith('failed to download artifact "http://')
    assert not info.value.recoverable
    assert list((alloc / "web/local").iterdir()) == []
    assert sorted(p.name for p in alloc.iterdir()) == ["alloc", "web"]  # temp dir removed


def test_destination_must_stay_in_the_alloc_dir(site: FakeSite, alloc: Path) -> None:
    with pytest.raises(ArtifactError, match="artifact destination path escapes alloc directory"):
        fetch(alloc, site.base + "/f", RelativeDest="../../outside")
    assert site.requests == []


def test_destination_may_be_the_shared_alloc_dir(site: FakeSite, alloc: Path) -> None:
    site.files["/shared.txt"] = b"s"
    fetch(alloc, site.base + "/shared.txt", RelativeDest="../alloc/data/")
    assert (alloc / "alloc/data/shared.txt").read_bytes() == b"s"


def test_file_mode_writes_exactly_the_destination(site: FakeSite, alloc: Path) -> None:
    site.files["/tool-v1"] = b"#!/bin/sh"
    fetch(alloc, site.base + "/tool-v1", GetterMode="file", RelativeDest="local/bin/tool")
    assert (alloc / "web/local/bin/tool").read_bytes() == b"#!/bin/sh"


def test_source_is_interpolated(site: FakeSite, alloc: Path) -> None:
    site.files["/x/f"] = b"1"
    fetch(alloc, site.base + "/${NOMAD_X}/f")
    assert (alloc / "web/local/f").exists()


def test_http_errors_carry_recoverability(site: FakeSite, alloc: Path) -> None:
    with pytest.raises(ArtifactError, match="bad response code: 404") as missing:
        fetch(alloc, site.base + "/nope.txt")
    assert not missing.value.recoverable
    with pytest.raises(ArtifactError, match="bad response code: 503") as busy:
        fetch(alloc, site.base + "/boom")
    assert busy.value.recoverable


def test_unreachable_host_is_recoverable(alloc: Path) -> None:
    with pytest.raises(ArtifactError, match=r"error downloading http://127\.0\.0\.1:9/x") as info:
        fetch(alloc, "http://127.0.0.1:9/x?secret=1")
    assert info.value.recoverable
    # The source is quoted as written (as Nomad does); our own detail drops the query.
    assert "secret" not in info.value.message.split('": ', 1)[1]


def test_malicious_archive_is_refused_unrecoverably(
    site: FakeSite, alloc: Path, tmp_path: Path
) -> None:
    site.files["/evil.tgz"] = make_tar(tmp_path / "evil.tgz", [file("../../escaped")]).read_bytes()
    with pytest.raises(ArtifactError, match=r'archive member "\.\./\.\./escaped" escapes') as info:
        fetch(alloc, site.base + "/evil.tgz")
    assert not info.value.recoverable
    assert not (alloc.parent / "escaped").exists()
    assert not (alloc / "escaped").exists()


def test_size_limit_is_enforced(site: FakeSite, alloc: Path) -> None:
    site.files["/big"] = b"x" * 5000
    with pytest.raises(ArtifactError, match="exceeds the limit of 1000 bytes"):
        get_artifact({"GetterSource": site.base + "/big"}, alloc / "web", alloc, {},
                     config=GetterConfig(max_download_bytes=1000))  # fmt: skip
    assert not (alloc / "web/local/big").exists()


def test_unsupported_scheme_is_refused() -> None:
    with pytest.raises(ArtifactError, match="download not supported for scheme 'git'"):
        prepare_url("git::https://example.com/repo.git", {})


def test_prepare_url_strips_magic_and_s3_options() -> None:
    prepared = prepare_url(
        "s3::http://h:9/b/k.tar.gz", {"aws_access_key_id": "A", "checksum": "sha256:00", "x": "1"}
    )
    assert prepared.getter == "s3"
    assert prepared.url == "http://h:9/b/k.tar.gz?x=1"
    assert prepared.archive == "tar.gz"
    assert prepared.checksum == "sha256:00"
    assert prepared.s3_params == {"aws_access_key_id": "A"}
    in_query = prepare_url("s3::http://h:9/b/k?region=eu-west-1&version=v2", {})
    assert in_query.s3_params == {"region": "eu-west-1", "version": "v2"}
    assert in_query.url == "http://h:9/b/k"
