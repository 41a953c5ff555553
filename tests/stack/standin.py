"""A stand-in for the agent and S3 server, for process-management tests only.

`python standin.py agent PORT TOKEN_FILE` answers /v1/status/leader and checks
X-Nomad-Token elsewhere; `python standin.py s3 PORT` answers 200 to everything.
"""

from __future__ import annotations

import os
import secrets
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    token = ""
    if kind == "agent":
        token_file = Path(sys.argv[3])
        if not token_file.exists():
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, secrets.token_hex(16).encode())
            os.close(fd)
        token = token_file.read_text().strip()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            ok = (
                kind != "agent"
                or self.path.startswith("/v1/status/")
                or self.headers.get("X-Nomad-Token") == token
            )
            body = b'"127.0.0.1:4647"' if ok else b"Permission denied"
            self.send_response(200 if ok else 403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_HEAD = _answer

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
