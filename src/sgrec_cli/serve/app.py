"""The HTTP JSON API of `sgrec serve` (FastAPI): requests are checked here, answered by a
``Recommender`` through the ``Batcher``.

    POST /recommend  {"history": [item ids, oldest first], "k": 10, "exclude_history": true}
                     or {"user": "<dataset user>", ...}
                     -> the record `sgrec recommend --json` prints for the same input
    GET  /health     the process is up
    GET  /ready      the model is loaded and the batcher runs (503 otherwise)
    GET  /info       run, model, its manifest, settings, counters

Errors are ``{"error": "<one line>"}``: 400 malformed JSON, 422 a field that is wrong (type,
unknown item or user, k out of range), 503 too many requests held, 500 a failure while
answering (logged; the server keeps serving).
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError

from .. import __version__
from ..errors import BadInputError
from .batcher import Batcher, QueueFull
from .config import ServeConfig
from .recommend import Query, Recommender, Request

__all__ = ["RecommendBody", "create_app", "to_query", "one_line"]

log = logging.getLogger("sgrec.serve")


class RecommendBody(BaseModel):
    """The body of ``POST /recommend``: exactly one of ``history`` and ``user``."""

    model_config = ConfigDict(extra="forbid")

    history: list[StrictStr | StrictInt] | None = None
    user: StrictStr | StrictInt | None = None
    k: StrictInt = 10
    exclude_history: StrictBool = True


def one_line(e: ValidationError) -> str:
    """The first problem of a validation error, as one line naming the field."""
    errors = e.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"]) or "body"
    msg = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {msg}{more}"


def to_query(rec: Recommender, body: RecommendBody, max_k: int) -> Query:
    """A checked request -> a query; what is wrong is one BadInputError naming the field."""
    if (body.history is None) == (body.user is None):
        raise BadInputError('give "history" (item ids, oldest first) or "user", exactly one')
    if not 1 <= body.k <= max_k:
        raise BadInputError(f"k {body.k} must be in 1..{max_k}")
    if body.history is not None:
        if not body.history:
            raise BadInputError("history must be a non-empty list of item ids")
        request = Request(None, [str(i) for i in body.history], "history")
    else:
        request = rec.user_request(str(body.user), "user")
    return rec.resolve(request, body.k, body.exclude_history)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(rec: Recommender, cfg: ServeConfig) -> FastAPI:
    """The FastAPI app serving ``rec``; the batcher starts and stops with the app."""
    batcher = Batcher(rec.answer, max_batch=cfg.max_batch, wait_ms=cfg.batch_wait_ms,
                      max_queue=cfg.max_queue)
    started = time.time()

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        log.info("serving %s of %s", rec.model, rec.run.path)
        yield
        await batcher.stop()

    app = FastAPI(title="sgrec", version=__version__, lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        if not batcher.running:
            return _error(503, "not ready: the batcher is not running")
        return {"status": "ready", "model": rec.model}

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return {
            "version": __version__,
            "run": str(rec.run.path),
            "model": rec.model,
            "manifest": rec.manifest_summary(),
            "items": rec.n_items,
            "settings": {"num_beams": cfg.num_beams, "decode": cfg.decode, "max_k": cfg.max_k,
                         "batch_wait_ms": cfg.batch_wait_ms, "max_batch": cfg.max_batch,
                         "max_queue": cfg.max_queue, "device": rec.device},
            "counters": {"requests_answered": batcher.jobs, "batches": batcher.batches,
                         "held_now": batcher.held, "uptime_s": round(time.time() - started, 1)},
        }

    @app.post("/recommend")
    async def recommend(request: HttpRequest):
        raw = await request.body()
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            return _error(400, f"malformed JSON: {e}")
        if not isinstance(obj, dict):
            return _error(400, f"the body must be a JSON object, not {type(obj).__name__}")
        try:
            query = to_query(rec, RecommendBody.model_validate(obj), cfg.max_k)
        except ValidationError as e:
            return _error(422, one_line(e))
        except BadInputError as e:
            return _error(422, str(e))
        try:
            return JSONResponse(await batcher.submit(query))
        except QueueFull as e:
            return _error(503, f"busy: {e}; try again")
        except Exception as e:  # noqa: BLE001 - the server answers 500 and keeps serving
            log.exception("answering a request failed")
            return _error(500, f"internal error: {type(e).__name__}: {e}")

    return app
