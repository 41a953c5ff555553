"""A minimal Flask app: answers on $PORT at / and /healthz."""

import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return {"app": "flask", "dyno": os.environ.get("DYNO"), "greeting": os.environ.get("GREETING", "hello")}


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ["PORT"]))
