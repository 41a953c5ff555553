"""The embedded stack's record, `$NOMADPAAS_HOME/stack.json`: read, write, turn into env vars.

`nomadpaas.settings.read_stack_file` reads the same file as the fallback for unset
variables; this module owns its shape. It holds a secret (the S3 secret key), so it is
written mode 0600, atomically (a reader never sees half a file).
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nomadpaas.settings import STACK_FILE, read_stack_file
from nomadpaas.stack.process import ProcessRecord

__all__ = ["REGION", "StackRecord", "load_record", "port_of", "save_record", "shell_exports"]

#: The region exported for the embedded S3 (any works; boto3 insists on one).
REGION = "us-east-1"


@dataclass(frozen=True)
class StackRecord:
    """Where the embedded stack answers and which processes are its servers.

    Parameters:
        home: NOMADPAAS_HOME, the directory holding the record and the data dirs.
        nomad_addr: the agent's Nomad HTTP API.
        consul_addr: the agent's Consul-compatible API.
        s3_endpoint: the embedded S3 server.
        s3_bucket: the bucket the platform uses.
        token_file: the file the agent wrote its management token to (mode 0600).
        aws_access_key_id, aws_secret_access_key: credentials for the embedded S3
            (it accepts any; fixed ones let boto3's credential chain work unchanged).
        processes: the servers `up` started, by name ("agent", "s3").
    """

    home: Path
    nomad_addr: str
    consul_addr: str
    s3_endpoint: str
    s3_bucket: str
    token_file: str
    aws_access_key_id: str
    aws_secret_access_key: str
    processes: Mapping[str, ProcessRecord] = field(default_factory=dict)

    def token(self) -> str | None:
        """The agent's management token, None while the agent has not written it."""
        try:
            return Path(self.token_file).read_text().strip() or None
        except OSError:
            return None

    def env(self) -> dict[str, str]:
        """The variables a shell needs to talk to this stack (DESIGN.md §6)."""
        env = {"NOMAD_ADDR": self.nomad_addr}
        token = self.token()
        if token:
            env["NOMAD_TOKEN"] = token
        env.update(
            {
                "CONSUL_HTTP_ADDR": self.consul_addr,
                "NOMADPAAS_S3_ENDPOINT": self.s3_endpoint,
                "NOMADPAAS_S3_BUCKET": self.s3_bucket,
                "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
                "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
                "AWS_DEFAULT_REGION": REGION,
                "NOMADPAAS_HOME": str(self.home),
            }
        )
        return env

    def to_json(self) -> dict[str, Any]:
        """The stack.json document (secrets included: the file is mode 0600)."""
        return {
            "nomad_addr": self.nomad_addr,
            "consul_addr": self.consul_addr,
            "s3_endpoint": self.s3_endpoint,
            "s3_bucket": self.s3_bucket,
            "token_file": self.token_file,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
            "processes": {name: proc.to_json() for name, proc in self.processes.items()},
        }


def shell_exports(env: Mapping[str, str]) -> str:
    """`export K=V` lines, shell-quoted, so `eval "$(nomadpaas up --env)"` works."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())


def port_of(url: str | None) -> int | None:
    """The port in an http URL, None when absent or unparseable."""
    if not url:
        return None
    try:
        return urlsplit(url).port
    except ValueError:
        return None


def _str(data: Mapping[str, object], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def load_record(home: Path) -> StackRecord | None:
    """The record under `home`, None when there is none (or it is not a JSON object)."""
    data = read_stack_file(home)
    if data is None:
        return None
    procs: dict[str, ProcessRecord] = {}
    raw_procs = data.get("processes")
    if isinstance(raw_procs, dict):
        for name, entry in raw_procs.items():
            proc = ProcessRecord.from_json(entry) if isinstance(entry, dict) else None
            if proc is not None:
                procs[str(name)] = proc
    return StackRecord(
        home=home,
        nomad_addr=_str(data, "nomad_addr"),
        consul_addr=_str(data, "consul_addr"),
        s3_endpoint=_str(data, "s3_endpoint"),
        s3_bucket=_str(data, "s3_bucket") or "nomadpaas",
        token_file=_str(data, "token_file"),
        aws_access_key_id=_str(data, "aws_access_key_id"),
        aws_secret_access_key=_str(data, "aws_secret_access_key"),
        processes=procs,
    )


def save_record(record: StackRecord) -> Path:
    """Write `record` to `<home>/stack.json` atomically, mode 0600; return the path."""
    path = record.home / STACK_FILE
    fd, tmp = tempfile.mkstemp(prefix=".stack.", suffix=".json", dir=record.home)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(record.to_json(), fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return path


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
