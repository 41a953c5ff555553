"""Verifies a downloaded file against `checksum=type:hex`; mirrors go-getter's checksum.go.

go-getter accepts `md5`, `sha1`, `sha256` and `sha512`, and guesses the type from the hex
length when it is omitted. The `file:` form (a remote checksum file) is not supported here.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

HASH_CHUNK_BYTES = 1024 * 1024
_HEX_LENGTHS = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
_TYPES = ("md5", "sha1", "sha256", "sha512")


class ChecksumError(ValueError):
    """A malformed checksum parameter or a mismatch; the message says which."""


@dataclass(frozen=True)
class Checksum:
    """An expected digest: the hash type and the lower-case hex value."""

    type: str
    value: str

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


def parse_checksum(text: str) -> Checksum:
    """Parse `type:hex` or a bare hex digest (type guessed from its length)."""
    kind, sep, value = text.partition(":")
    if not sep:
        kind, value = _HEX_LENGTHS.get(len(text), ""), text
        if not kind:
            raise ChecksumError(f"unknown type for checksum {text}")
    kind = kind.lower()
    if kind == "file":
        raise ChecksumError("checksum files (checksum=file:...) are not supported")
    if kind not in _TYPES:
        raise ChecksumError(f"unsupported checksum type: {kind}")
    value = value.strip().lower()
    expected_len = hashlib.new(kind).digest_size * 2
    if len(value) != expected_len or any(c not in "0123456789abcdef" for c in value):
        raise ChecksumError(f"invalid {kind} checksum {value!r}: want {expected_len} hex digits")
    return Checksum(kind, value)


def file_digest(path: Path, kind: str) -> str:
    """The hex digest of a file, read in chunks."""
    digest = hashlib.new(kind)
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, expected: Checksum, name: str) -> None:
    """Raise ChecksumError naming both sums when the file does not match."""
    actual = file_digest(path, expected.type)
    if not hmac.compare_digest(actual, expected.value):
        raise ChecksumError(
            f"Checksums did not match for {name}.\n"
            f"Expected: {expected}\nGot: {expected.type}:{actual}"
        )
