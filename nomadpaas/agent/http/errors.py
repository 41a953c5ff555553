"""Coded HTTP errors: the one way a handler says "answer with this status and text";
mirrors command/agent/http.go's CodedError / HTTPCodedError.

The server's `wrap` turns a `CodedError` into `code` + a plain-text body. Anything else a
handler raises is a 500 with the exception text, as Nomad does for uncoded RPC errors.
"""

from __future__ import annotations

# Texts Nomad uses verbatim (command/agent/http.go, nomad/structs/errors.go).
ERR_INVALID_METHOD = "Invalid method"
ERR_PERMISSION_DENIED = "Permission denied"
ERR_TOKEN_NOT_FOUND = "ACL token not found"
ERR_EMPTY_BODY = "Request body is empty"
ERR_INVALID_WAIT = "Invalid wait time"
ERR_INVALID_INDEX = "Invalid index"


class CodedError(Exception):
    """An error with an HTTP status; `str()` is the plain-text body."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"CodedError({self.code}, {self.message!r})"


def bad_request(message: str) -> CodedError:
    return CodedError(400, message)


def not_found(message: str) -> CodedError:
    return CodedError(404, message)
