"""The object-key layout of DESIGN.md §3: content-addressed keys that cannot escape their prefix.

    sources/<app>/<sha256>.tar.gz     source tarballs (content-addressed)
    slugs/<app>/<sha256>.tar.gz       compiled slugs (content-addressed, immutable)
    cache/<app>/<stack>.tar.gz        build cache, restored before compile
    builds/<app>/<build-id>.json      build records

Every component is validated against a strict pattern before it is joined, so no input
can introduce a `/`, `..` or a control character into a key. `validate_key` checks keys
that come from elsewhere (a storage implementation mapping keys to files uses it).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from nomadpaas.errors import InvalidInput

__all__ = [
    "APP_PREFIXES",
    "MAX_KEY_BYTES",
    "app_prefixes",
    "build_record_key",
    "cache_key",
    "sha256_file",
    "slug_key",
    "source_key",
    "validate_app",
    "validate_key",
    "validate_sha256",
]

#: The top-level prefixes that hold one app's objects (`apps destroy` deletes all four).
APP_PREFIXES = ("sources", "slugs", "cache", "builds")
#: S3's own limit on a key's UTF-8 length.
MAX_KEY_BYTES = 1024
#: Read size for hashing: large enough to be fast, small enough to stay out of the way.
HASH_CHUNK_BYTES = 1024 * 1024

# App names as Nomad job IDs and DNS labels allow them: lowercase, digits, dashes.
_APP_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Stack names such as `heroku-24` or `scalingo-22`.
_STACK_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# Build IDs: UUIDs, ULIDs, timestamps; never a path.
_BUILD_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\\]")


def _check(kind: str, value: str, pattern: re.Pattern[str], hint: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidInput(f"{value!r} is not a valid {kind}.", hint=hint)
    return value


def validate_app(app: str) -> str:
    """`app` if it is a valid app name, else InvalidInput."""
    return _check("app name", app, _APP_RE, "Use up to 63 lowercase letters, digits and dashes.")


def validate_sha256(digest: str) -> str:
    """`digest` if it is 64 lowercase hex digits, else InvalidInput."""
    return _check("sha256 digest", digest, _SHA256_RE, "Pass 64 lowercase hex digits.")


def source_key(app: str, sha256: str) -> str:
    """`sources/<app>/<sha256>.tar.gz`: where a source tarball with that digest lives."""
    return f"sources/{validate_app(app)}/{validate_sha256(sha256)}.tar.gz"


def slug_key(app: str, sha256: str) -> str:
    """`slugs/<app>/<sha256>.tar.gz`: where a slug with that digest lives."""
    return f"slugs/{validate_app(app)}/{validate_sha256(sha256)}.tar.gz"


def cache_key(app: str, stack: str) -> str:
    """`cache/<app>/<stack>.tar.gz`: the app's build cache for one stack."""
    stack = _check("stack name", stack, _STACK_RE, "Use a name like heroku-24.")
    return f"cache/{validate_app(app)}/{stack}.tar.gz"


def build_record_key(app: str, build_id: str) -> str:
    """`builds/<app>/<build-id>.json`: the record of one build."""
    build_id = _check(
        "build ID", build_id, _BUILD_ID_RE, "Use letters, digits, dots, dashes, underscores."
    )
    return f"builds/{validate_app(app)}/{build_id}.json"


def app_prefixes(app: str) -> tuple[str, ...]:
    """Every prefix under which `app` has objects, each ending in `/`."""
    app = validate_app(app)
    return tuple(f"{top}/{app}/" for top in APP_PREFIXES)


def validate_key(key: str) -> str:
    """`key` if it is a safe relative object key, else InvalidInput.

    Safe: non-empty, at most MAX_KEY_BYTES of UTF-8, no leading `/`, no empty, `.` or
    `..` segment, no backslash or control character. Every key this module builds passes.
    """
    if not isinstance(key, str) or not key:
        raise InvalidInput("An object key must be a non-empty string.")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidInput(f"Object key {key[:60]!r}… is longer than {MAX_KEY_BYTES} bytes.")
    if _CONTROL_RE.search(key):
        raise InvalidInput(f"Object key {key!r} contains a control character or backslash.")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidInput(
            f"Object key {key!r} has an empty, '.' or '..' path segment.",
            hint="Keys are relative paths like slugs/<app>/<sha256>.tar.gz.",
        )
    return key


def sha256_file(path: str | Path) -> str:
    """The lowercase hex sha256 of the file at `path`, read in chunks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
