"""A small static file server for the static buildpack (stdlib only, threaded).

Serves $STATIC_ROOT on $HOST:$PORT (HOST defaults to 127.0.0.1). Hidden paths (any
segment starting with ".") are never served, directory listings are off, and a
directory answers with its index.html.
"""

import http.server
import os
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    def send_head(self):  # type: ignore[no-untyped-def]
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if any(part.startswith(".") for part in path.split("/") if part):
            self.send_error(404, "Not Found")
            return None
        return super().send_head()

    def list_directory(self, path):  # type: ignore[no-untyped-def]
        self.send_error(404, "Not Found")
        return None

    def log_message(self, format, *args):  # type: ignore[no-untyped-def]
        sys.stdout.write("%s %s\n" % (self.address_string(), format % args))
        sys.stdout.flush()


def main() -> None:
    root = os.environ.get("STATIC_ROOT", ".")
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ["PORT"])

    def handler(*args, **kwargs):  # type: ignore[no-untyped-def]
        return Handler(*args, directory=root, **kwargs)

    server = http.server.ThreadingHTTPServer((host, port), handler)
    print(f"serving {root} on http://{host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
