"""A minimal FastAPI app: answers on $PORT at / and /healthz."""

import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def index() -> dict[str, str | None]:
    return {"app": "fastapi", "dyno": os.environ.get("DYNO")}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
