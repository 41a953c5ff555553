"""A function served by Google's Functions Framework: every path (/, /healthz) answers."""

import os


def main(request):
    name = request.args.get("name", "world")
    return {"app": "python-function", "hello": name, "dyno": os.environ.get("DYNO")}
