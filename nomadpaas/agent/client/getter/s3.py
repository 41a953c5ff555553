"""Fetches an S3 object with a stdlib SigV4 signature; mirrors go-getter's get_s3.go.

Credentials come from the GetterOptions go-getter honours (`aws_access_key_id`,
`aws_access_key_secret`, `aws_access_token`) or else from the **agent's** environment
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), never from the task's.
The region comes from `region=`, the host name, `AWS_REGION`/`AWS_DEFAULT_REGION`, or
`us-east-1`. Without credentials the request goes out unsigned (public objects).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from nomadpaas.agent.client.getter import http
from nomadpaas.agent.client.getter.errors import ArtifactError

EMPTY_PAYLOAD_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
DEFAULT_REGION = "us-east-1"
OPTION_KEYS = ("aws_access_key_id", "aws_access_key_secret", "aws_access_token", "region",
               "version", "aws_profile")  # fmt: skip
_AWS_HOST = re.compile(r"^(?:(?P<bucket>.+)\.)?s3[.-](?:(?P<region>[a-z0-9-]+)\.)?amazonaws\.com$")


@dataclass(frozen=True)
class Credentials:
    """An access key pair and an optional session token."""

    access_key: str
    secret_key: str
    session_token: str = ""


@dataclass(frozen=True)
class S3Object:
    """Where one object lives: endpoint base URL (scheme://host[:port]), bucket, key."""

    endpoint: str
    bucket: str
    key: str
    region: str
    version: str = ""

    def url(self) -> str:
        path = "/" + _uri_encode(self.bucket) + "/" + _uri_encode(self.key, keep_slash=True)
        return (
            self.endpoint
            + path
            + (f"?versionId={_uri_encode(self.version)}" if self.version else "")
        )


def _uri_encode(text: str, keep_slash: bool = False) -> str:
    """SigV4 URI encoding: everything but unreserved characters (and '/' in paths)."""
    return quote(text, safe="-_.~/" if keep_slash else "-_.~")


def parse_source(url: str, options: Mapping[str, str], env: Mapping[str, str]) -> S3Object:
    """Parse `https://host/bucket/key` (path style), `https://bucket.s3.amazonaws.com/key`
    (virtual host) or `s3://bucket/key`, the `s3::` prefix already removed."""
    parts = urlsplit(url)
    path = unquote(parts.path).lstrip("/")
    region = options.get("region") or ""
    host = (parts.hostname or "").lower()
    if parts.scheme == "s3":
        bucket, key = host, path
        region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        return S3Object(
            f"https://s3.{region}.amazonaws.com", bucket, key, region, options.get("version", "")
        )
    if parts.scheme not in ("http", "https"):
        raise ArtifactError(f"URL is not a valid S3 URL: {url}", recoverable=False)
    aws = _AWS_HOST.match(host)
    if aws and aws.group("bucket"):
        bucket, key = aws.group("bucket"), path
        endpoint = f"{parts.scheme}://{parts.netloc.removeprefix(bucket + '.')}"
    else:
        bucket, _, key = path.partition("/")
        endpoint = f"{parts.scheme}://{parts.netloc}"
    if aws and aws.group("region"):
        region = region or aws.group("region")
    region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    if not bucket or not key:
        raise ArtifactError(f"URL is not a valid S3 URL: {url}", recoverable=False)
    return S3Object(endpoint, bucket, key, region, options.get("version", ""))


def credentials(options: Mapping[str, str], env: Mapping[str, str]) -> Credentials | None:
    """Keys from GetterOptions (as go-getter honours them), else from the agent's env."""
    if options.get("aws_access_key_id"):
        return Credentials(
            options["aws_access_key_id"],
            options.get("aws_access_key_secret", ""),
            options.get("aws_access_token", ""),
        )
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return Credentials(
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN", "")
        )
    return None


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sign_v4(
    method: str,
    url: str,
    headers: Mapping[str, str],
    creds: Credentials,
    region: str,
    now: datetime,
    *,
    service: str = "s3",
    payload_sha256: str = EMPTY_PAYLOAD_SHA256,
) -> dict[str, str]:
    """Return `headers` plus Host, X-Amz-Date, X-Amz-Content-Sha256, the session token (if
    any) and the SigV4 `Authorization` header. `url` must already be URI-encoded."""
    parts = urlsplit(url)
    amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    signed = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
    host = parts.netloc.lower()
    if (parts.scheme, parts.port) in (("https", 443), ("http", 80)):
        host = host.rsplit(":", 1)[0]  # clients send Host without a default port
    signed["host"] = host
    signed["x-amz-date"] = amz_date
    signed["x-amz-content-sha256"] = payload_sha256
    if creds.session_token:
        signed["x-amz-security-token"] = creds.session_token
    names = sorted(signed)
    query = sorted(
        (_uri_encode(unquote(k)), _uri_encode(unquote(v)))
        for k, _, v in (p.partition("=") for p in parts.query.split("&") if p)
    )
    canonical = "\n".join([
        method,
        parts.path or "/",
        "&".join(f"{k}={v}" for k, v in query),
        "".join(f"{n}:{signed[n]}\n" for n in names),
        ";".join(names),
        payload_sha256,
    ])  # fmt: skip
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()
    ])  # fmt: skip
    key = _hmac(("AWS4" + creds.secret_key).encode(), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out = dict(headers)
    out.update({n: signed[n] for n in ("x-amz-date", "x-amz-content-sha256")})
    if creds.session_token:
        out["x-amz-security-token"] = creds.session_token
    out["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope},"
        f"SignedHeaders={';'.join(names)},Signature={signature}"
    )
    return out


def download(
    url: str,
    dest: Path,
    options: Mapping[str, str],
    agent_env: Mapping[str, str],
    *,
    read_timeout_s: float = http.READ_TIMEOUT_S,
    max_bytes: int = http.MAX_DOWNLOAD_BYTES,
) -> None:
    """GET one object into file `dest`, signed when credentials are available."""
    if options.get("aws_profile"):
        raise ArtifactError("aws_profile is not supported by this agent", recoverable=False)
    obj = parse_source(url, options, agent_env)
    creds = credentials(options, agent_env)
    request_url = obj.url()
    headers: dict[str, str] = {}
    if creds is not None:
        headers = sign_v4("GET", request_url, {}, creds, obj.region, datetime.now(UTC))
    try:
        http.download(request_url, dest, headers=headers, read_timeout_s=read_timeout_s,
                      max_bytes=max_bytes)  # fmt: skip
    except ArtifactError as exc:
        raise ArtifactError(
            f"GetObject s3://{obj.bucket}/{obj.key}: {exc.message}", exc.recoverable
        ) from exc
