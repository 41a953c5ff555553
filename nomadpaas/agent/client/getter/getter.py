"""Downloads one task artifact into the task dir; mirrors client/allocrunner/taskrunner/getter.

Preparing the URL follows Nomad and go-getter (nomad-api.md §9): interpolate the source,
options and destination; append `GetterOptions` to the query and re-encode it sorted, as
Go's `url.Values.Encode` does; strip the magic `archive`, `checksum` and `filename`
parameters; keep the destination inside the allocation directory; choose the archive
format from the URL *path* (so presigned URLs unpack) unless `archive=` says otherwise.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from nomadpaas.agent.client.getter import http, s3
from nomadpaas.agent.client.getter.archive import (
    ARCHIVE_FORMATS,
    ArchiveError,
    ArchiveLimits,
    detect_format,
    unpack,
)
from nomadpaas.agent.client.getter.checksum import ChecksumError, parse_checksum, verify_file
from nomadpaas.agent.client.getter.errors import ArtifactError

__all__ = ["ArtifactError", "GetterConfig", "get_artifact", "prepare_url"]

DEFAULT_RELATIVE_DEST = "local/"
MAGIC_PARAMS = ("archive", "checksum", "filename")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")  # strconv.ParseBool's false values
_VAR = re.compile(r"\$\{([^}]+)\}")
_ENV_INDEX = re.compile(r'^env\[\s*"([^"]+)"\s*\]$')


@dataclass(frozen=True)
class GetterConfig:
    """Client-side limits, like Nomad's `artifact` client block."""

    read_timeout_s: float = http.READ_TIMEOUT_S
    max_download_bytes: int = http.MAX_DOWNLOAD_BYTES
    archive_limits: ArchiveLimits = field(default_factory=ArchiveLimits)


@dataclass(frozen=True)
class PreparedURL:
    """A source after interpolation, option merging and magic-parameter extraction."""

    getter: str  # "http" or "s3"
    url: str  # what is fetched: magic parameters removed, query re-encoded and sorted
    archive: str | None  # the format to unpack, or None for a plain file
    checksum: str  # the raw `checksum=` value, "" if absent
    filename: str  # the raw `filename=` value, "" if absent
    s3_params: dict[str, str] = field(default_factory=dict)  # region, version, aws_* keys


def default_interpolate(env: Mapping[str, str]) -> Callable[[str], str]:
    """`${VAR}`, `${env.VAR}` and `${env["VAR"]}` from `env`; unknown names stay as written."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        indexed = _ENV_INDEX.match(name)
        key = indexed.group(1) if indexed else name.removeprefix("env.")
        return env.get(key, match.group(0))

    return lambda text: _VAR.sub(lookup, text)


def prepare_url(source: str, options: Mapping[str, str]) -> PreparedURL:
    """Merge options into the query, sort it, split off the magic parameters, pick the getter."""
    forced, sep, rest = source.partition("::")
    if not sep or "://" in forced:
        forced, rest = "", source
    parts = urlsplit(rest)
    getter = forced or parts.scheme
    if getter in ("http", "https"):
        getter = "http"
    elif getter != "s3":
        scheme = forced or parts.scheme or "(none)"
        raise ArtifactError(f"download not supported for scheme '{scheme}'", recoverable=False)
    pairs = parse_qsl(parts.query, keep_blank_values=True) + list(options.items())
    pairs.sort(key=lambda kv: kv[0])  # stable: values of one key keep their order, as in Go
    magic = {k: v for k, v in pairs if k in MAGIC_PARAMS}
    kept = [(k, v) for k, v in pairs if k not in MAGIC_PARAMS]
    s3_params: dict[str, str] = {}
    if getter == "s3":
        s3_params = {k: v for k, v in kept if k in s3.OPTION_KEYS}
        kept = [(k, v) for k, v in kept if k not in s3.OPTION_KEYS]
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), parts.fragment))
    archive_param = magic.get("archive", "")
    archive: str | None
    if archive_param in _GO_FALSE:
        archive = None
    elif archive_param:
        if archive_param not in ARCHIVE_FORMATS:
            raise ArtifactError(f"unsupported archive format '{archive_param}'", recoverable=False)
        archive = archive_param
    else:
        archive = detect_format(parts.path)
    return PreparedURL(
        getter, url, archive, magic.get("checksum", ""), magic.get("filename", ""), s3_params
    )


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def destination(task_dir: Path, alloc_dir: Path, relative_dest: str) -> Path:
    """The absolute destination; refused if it leaves the allocation dir (also via symlinks)."""
    joined = os.path.normpath(os.path.join(task_dir, relative_dest or DEFAULT_RELATIVE_DEST))
    root = os.path.normpath(alloc_dir)
    if not _inside(joined, root) or not _inside(os.path.realpath(joined), os.path.realpath(root)):
        raise ArtifactError("artifact destination path escapes alloc directory", recoverable=False)
    return Path(joined)


def get_artifact(
    artifact: Mapping[str, Any],
    task_dir: Path,
    alloc_dir: Path,
    env: Mapping[str, str],
    interpolate: Callable[[str], str] | None = None,
    *,
    agent_env: Mapping[str, str] | None = None,
    config: GetterConfig | None = None,
) -> None:
    """Fetch one TaskArtifact (`GetterSource`, `GetterOptions`, `GetterHeaders`, `GetterMode`,
    `RelativeDest`) into `task_dir`. `alloc_dir` is the allocation root that the destination
    must stay inside; `env` is the task environment used when `interpolate` is None; S3
    credentials come from `agent_env` (default: this process's environment), never the job.
    Raises ArtifactError with the `Failed Artifact Download` message."""
    raw_source = str(artifact.get("GetterSource") or "")
    try:
        _get(artifact, task_dir, alloc_dir, interpolate or default_interpolate(env),
             os.environ if agent_env is None else agent_env, config or GetterConfig())  # fmt: skip
    except ArtifactError as exc:
        raise ArtifactError(
            f"failed to download artifact {_go_quote(raw_source)}: {exc.message}", exc.recoverable
        ) from exc
    except OSError as exc:  # local disk trouble (full, permissions): worth a retry
        raise ArtifactError(
            f"failed to download artifact {_go_quote(raw_source)}: {exc}", recoverable=True
        ) from exc


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _get(
    artifact: Mapping[str, Any],
    task_dir: Path,
    alloc_dir: Path,
    interp: Callable[[str], str],
    agent_env: Mapping[str, str],
    config: GetterConfig,
) -> None:
    source = interp(str(artifact.get("GetterSource") or ""))
    if not source:
        raise ArtifactError("artifact source is empty", recoverable=False)
    options = {k: interp(str(v)) for k, v in (artifact.get("GetterOptions") or {}).items()}
    headers = {k: interp(str(v)) for k, v in (artifact.get("GetterHeaders") or {}).items()}
    mode = str(artifact.get("GetterMode") or "any")
    if mode not in ("any", "file", "dir"):
        raise ArtifactError(f"invalid artifact mode {mode!r}", recoverable=False)
    dest = destination(task_dir, alloc_dir, interp(str(artifact.get("RelativeDest") or "")))
    prepared = prepare_url(source, options)
    try:
        checksum = parse_checksum(prepared.checksum) if prepared.checksum else None
    except ChecksumError as exc:
        raise ArtifactError(str(exc), recoverable=False) from exc
    url_path = urlsplit(prepared.url).path
    if mode == "any" and prepared.archive is None and url_path.endswith("/"):
        mode = "dir"
    if mode == "dir" and prepared.archive is None:
        raise ArtifactError(
            "directory downloads are only supported for archives", recoverable=False
        )
    alloc_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".artifact-", dir=alloc_dir) as tmp:
        fetched = Path(tmp) / "download"
        if prepared.getter == "s3":
            s3.download(
                prepared.url, fetched, prepared.s3_params, agent_env,
                read_timeout_s=config.read_timeout_s, max_bytes=config.max_download_bytes,
            )  # fmt: skip
        else:
            http.download(
                prepared.url, fetched, headers=headers,
                read_timeout_s=config.read_timeout_s, max_bytes=config.max_download_bytes,
            )  # fmt: skip
        name = prepared.filename or unquote(url_path.rstrip("/").rsplit("/", 1)[-1])
        if checksum is not None:
            try:
                verify_file(fetched, checksum, name)
            except ChecksumError as exc:
                raise ArtifactError(str(exc), recoverable=False) from exc
        _place(fetched, dest, mode, prepared.archive, name, config.archive_limits)


def _place(
    fetched: Path, dest: Path, mode: str, archive: str | None, name: str, limits: ArchiveLimits
) -> None:
    if archive is not None:
        try:
            unpack(fetched, dest, archive, dest_is_file=(mode == "file"), limits=limits)
        except ArchiveError as exc:
            raise ArtifactError(str(exc), recoverable=False) from exc
        return
    target = dest if mode == "file" else dest / name
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise ArtifactError(f"invalid file name {_go_quote(name)}", recoverable=False)
    if target.is_symlink():
        raise ArtifactError(f"destination {target} is a symlink", recoverable=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(fetched, target)
    target.chmod(0o644)
