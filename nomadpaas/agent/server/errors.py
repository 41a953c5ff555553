"""Errors the server "RPC" layer raises; mirrors the coded RPC errors of nomad/structs.

`RPCError(code, message)`: the HTTP layer answers with `code` and the bare message. Most
server-side failures in Nomad are uncoded, which the HTTP layer turns into 500s, so
`code` defaults to 500.
"""

from __future__ import annotations


class RPCError(Exception):
    def __init__(self, message: str, code: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
