"""Settings read once from the environment (12-factor), validated, frozen.

The variables are the contract of DESIGN.md §6. `Settings.from_env()` reads them once;
nothing else in the library reads `os.environ` for configuration.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from nomadpaas.errors import InvalidInput

__all__ = ["STACK_FILE", "Settings", "default_home", "read_stack_file"]

#: Written by `nomadpaas up` under NOMADPAAS_HOME: the embedded stack's addresses,
#: credentials file and process IDs. Read here as the fallback for unset variables, so
#: `nomadpaas up && nomadpaas apps create x` works without `eval "$(nomadpaas up --env)"`.
STACK_FILE = "stack.json"

#: S3 bucket names: 3-63 chars, lowercase letters, digits, dots and hyphens.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: Nomad namespace names.
_NAMESPACE_RE = re.compile(r"^[a-zA-Z0-9-]{1,128}$")


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """`$XDG_DATA_HOME/nomadpaas`, else `~/.local/share/nomadpaas`."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path(env.get("HOME", str(Path.home()))) / ".local" / "share"
    return base / "nomadpaas"


def _url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(
            f"{name} has value {value!r}, which is not an http(s) URL.",
            hint=f"Set {name} to something like http://127.0.0.1:4646.",
        )
    return value.rstrip("/")


def read_stack_file(home: Path) -> dict[str, object] | None:
    """The embedded stack's record under `home`, or None when no stack was started there.

    Keys: nomad_addr, consul_addr, s3_endpoint, s3_bucket, token_file,
    aws_access_key_id, aws_secret_access_key, processes.
    """
    path = home / STACK_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stack_str(stack: Mapping[str, object] | None, key: str) -> str | None:
    value = stack.get(key) if stack else None
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Settings:
    """Where the platform's Nomad, Consul and S3 are, and who we are to them.

    Parameters:
        nomad_addr: Nomad HTTP API (`NOMAD_ADDR`, default http://127.0.0.1:4646).
        nomad_token: ACL secret (`NOMAD_TOKEN`), None when ACLs are off.
        nomad_namespace: `NOMAD_NAMESPACE`, default `default`.
        consul_addr: Consul HTTP API (`CONSUL_HTTP_ADDR`, default http://127.0.0.1:8500).
        s3_endpoint: `NOMADPAAS_S3_ENDPOINT`; None means AWS's own endpoint.
        s3_bucket: `NOMADPAAS_S3_BUCKET`, default `nomadpaas`.
        domain: `NOMADPAAS_DOMAIN`, default `localhost`; apps answer at `<app>.<domain>`.
        home: `NOMADPAAS_HOME`, where the embedded stack keeps its state.
        app: `NOMADPAAS_APP`, the default for `--app`.
        aws: the standard AWS variables that were set (credential chain inputs).
        embedded: True when the addresses came from the embedded stack's record
            (`$NOMADPAAS_HOME/stack.json`) because NOMAD_ADDR was unset.
    """

    nomad_addr: str = "http://127.0.0.1:4646"
    nomad_token: str | None = None
    nomad_namespace: str = "default"
    consul_addr: str = "http://127.0.0.1:8500"
    s3_endpoint: str | None = None
    s3_bucket: str = "nomadpaas"
    domain: str = "localhost"
    home: Path = field(default_factory=default_home)
    app: str | None = None
    aws: Mapping[str, str] = field(default_factory=dict)
    embedded: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the environment; raise InvalidInput naming the bad variable."""
        env = os.environ if environ is None else environ
        home_var = env.get("NOMADPAAS_HOME")
        home = Path(home_var) if home_var else default_home(env)
        # Unset NOMAD_ADDR + a running embedded stack: use the stack's record.
        stack = None if env.get("NOMAD_ADDR") else read_stack_file(home)
        if stack is not None:
            env = _overlay_stack(env, stack)
        consul = env.get("CONSUL_HTTP_ADDR") or "http://127.0.0.1:8500"
        if "://" not in consul:  # Consul's own clients accept host:port
            consul = "http://" + consul
        namespace = env.get("NOMAD_NAMESPACE") or "default"
        if not _NAMESPACE_RE.match(namespace):
            raise InvalidInput(
                f"NOMAD_NAMESPACE has value {namespace!r}, which is not a valid namespace name.",
                hint="Use letters, digits and hyphens only.",
            )
        bucket = env.get("NOMADPAAS_S3_BUCKET") or "nomadpaas"
        if not _BUCKET_RE.match(bucket):
            raise InvalidInput(
                f"NOMADPAAS_S3_BUCKET has value {bucket!r}, which is not a valid bucket name.",
                hint="Use 3-63 lowercase letters, digits, dots and hyphens.",
            )
        endpoint = env.get("NOMADPAAS_S3_ENDPOINT") or None
        aws_keys = (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "AWS_PROFILE",
        )
        return cls(
            nomad_addr=_url("NOMAD_ADDR", env.get("NOMAD_ADDR") or "http://127.0.0.1:4646"),
            nomad_token=env.get("NOMAD_TOKEN") or None,
            nomad_namespace=namespace,
            consul_addr=_url("CONSUL_HTTP_ADDR", consul),
            s3_endpoint=_url("NOMADPAAS_S3_ENDPOINT", endpoint) if endpoint else None,
            s3_bucket=bucket,
            domain=(env.get("NOMADPAAS_DOMAIN") or "localhost").strip(".").lower(),
            home=home,
            app=env.get("NOMADPAAS_APP") or None,
            aws={k: env[k] for k in aws_keys if env.get(k)},
            embedded=stack is not None,
        )


def _overlay_stack(env: Mapping[str, str], stack: Mapping[str, object]) -> dict[str, str]:
    """The environment with the stack's values filled in wherever a variable is unset."""
    merged = dict(env)
    fills = {
        "NOMAD_ADDR": _stack_str(stack, "nomad_addr"),
        "CONSUL_HTTP_ADDR": _stack_str(stack, "consul_addr"),
        "NOMADPAAS_S3_ENDPOINT": _stack_str(stack, "s3_endpoint"),
        "NOMADPAAS_S3_BUCKET": _stack_str(stack, "s3_bucket"),
        "AWS_ACCESS_KEY_ID": _stack_str(stack, "aws_access_key_id"),
        "AWS_SECRET_ACCESS_KEY": _stack_str(stack, "aws_secret_access_key"),
    }
    token_file = _stack_str(stack, "token_file")
    if token_file and not env.get("NOMAD_TOKEN"):
        try:
            fills["NOMAD_TOKEN"] = Path(token_file).read_text().strip() or None
        except OSError:
            pass
    for key, value in fills.items():
        if value and not merged.get(key):
            merged[key] = value
    if merged.get("AWS_ACCESS_KEY_ID") and not merged.get("AWS_DEFAULT_REGION"):
        merged.setdefault("AWS_REGION", "us-east-1")
    return merged
