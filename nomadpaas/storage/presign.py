"""Presign S3 URLs (SigV4 in the query string) for a path-style endpoint, in the stdlib.

What botocore's `generate_presigned_url` returns for an endpoint addressed path-style
(`http://host:port/<bucket>/<key>`), the form `S3Storage` uses for any endpoint but AWS
itself: same URL, same signature (the tests compare them at a fixed time). botocore
builds a whole request for each URL, runs it through its endpoint rules and signs it,
about 0.3 ms of CPU each; a push signs five before it can dispatch the build, while
its other requests wait on the GIL. Here a URL costs a few HMACs; the signing key is
kept for the day it is valid.

Signing (AWS SigV4, "Authenticating Requests: Using Query Parameters"): the canonical
request is `METHOD \\n path \\n sorted query \\n host:<host> \\n\\n host \\n UNSIGNED-PAYLOAD`,
its SHA-256 goes into the string to sign with the date and the scope
`<date>/<region>/s3/aws4_request`, signed with the key derived from the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

__all__ = ["PathStylePresigner"]

ALGORITHM = "AWS4-HMAC-SHA256"
#: A presigned URL cannot know the body it will carry (SigV4 query-string signing).
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: Ports a URL's host is signed without (as botocore and S3 servers leave them out).
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Characters SigV4 leaves unencoded in query keys and values (RFC 3986 unreserved).
_QUERY_SAFE = "-_.~"


class PathStylePresigner:
    """Presigned GET/PUT URLs for objects at `endpoint_url/<bucket>/<key>`.

    `supported(endpoint_url)` tells whether an endpoint can be handled here (plain
    http(s), no user info); callers fall back to botocore otherwise.
    """

    def __init__(self, endpoint_url: str, region: str, service: str = "s3") -> None:
        parts = urlsplit(endpoint_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path.rstrip("/")
        port = parts.port
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        default = _DEFAULT_PORTS.get(parts.scheme.lower())
        self._host = host if port is None or port == default else f"{host}:{port}"
        self._region = region
        self._service = service
        self._keys: dict[tuple[str, str], bytes] = {}

    @staticmethod
    def supported(endpoint_url: str) -> bool:
        parts = urlsplit(endpoint_url)
        return (
            parts.scheme.lower() in _DEFAULT_PORTS
            and bool(parts.hostname)
            and "@" not in parts.netloc
            and not parts.query
            and not parts.fragment
        )

    def presign(
        self,
        method: str,
        bucket: str,
        key: str,
        expires_s: int,
        *,
        access_key: str,
        secret_key: str,
        token: str | None = None,
        now: datetime | None = None,
    ) -> str:
        """The presigned URL for `method` (GET or PUT) on `bucket`/`key`."""
        path = quote(f"{self._base_path}/{bucket}/{key}", safe="/~")
        return self.presign_path(
            method, path, expires_s, access_key=access_key, secret_key=secret_key,
            token=token, now=now,
        )  # fmt: skip

    def presign_path(
        self,
        method: str,
        path: str,
        expires_s: int,
        *,
        access_key: str,
        secret_key: str,
        token: str | None = None,
        now: datetime | None = None,
    ) -> str:
        """The presigned URL for `method` on `path` (already URI-encoded) at this host."""
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        params = {
            "X-Amz-Algorithm": ALGORITHM,
            "X-Amz-Credential": f"{access_key}/{scope}",
            "X-Amz-Date": amz_date,
            "X-Amz-Expires": str(int(expires_s)),
            "X-Amz-SignedHeaders": "host",
        }
        if token:
            params["X-Amz-Security-Token"] = token
        query = "&".join(
            f"{quote(k, safe=_QUERY_SAFE)}={quote(v, safe=_QUERY_SAFE)}"
            for k, v in sorted(params.items())
        )
        canonical = "\n".join(
            (method.upper(), path, query, f"host:{self._host}", "", "host", UNSIGNED_PAYLOAD)
        )
        to_sign = "\n".join(
            (ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        signature = hmac.new(
            self._signing_key(secret_key, day), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        return f"{self._origin}{path}?{query}&X-Amz-Signature={signature}"

    def _signing_key(self, secret_key: str, day: str) -> bytes:
        cached = self._keys.get((secret_key, day))
        if cached is not None:
            return cached
        key = _hmac(f"AWS4{secret_key}".encode(), day)
        for part in (self._region, self._service, "aws4_request"):
            key = _hmac(key, part)
        self._keys = {(secret_key, day): key}  # one day's key at a time
        return key


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()
