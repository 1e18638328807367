"""The FastAPI application: middlewares, error handlers, routes and the page."""

from __future__ import annotations

import logging
import warnings
from contextlib import asynccontextmanager

from PIL import Image

from similar_images.service.config import ServiceConfig
from similar_images.service.engine import Engine

log = logging.getLogger(__name__)

def create_app(engine: Engine, *, warm_up: bool = True):
    """The ASGI application serving ``engine``.

    Args:
        engine: the opened database, model and limits.
        warm_up: load and run the model once at start.
    """
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    from similar_images.service import limits, routes
    from similar_images.service.docs import install_docs

    config: ServiceConfig = engine.config
    # Uploads are checked against --max-pixels before decoding (limits.check_pixels): Pillow's
    # own warning about large images would only repeat that in the server log.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

    @asynccontextmanager
    async def lifespan(app):
        if warm_up:
            engine.warm_up()
        await engine.batcher.start()
        log.info("serving %d images", len(engine.db))
        try:
            yield
        finally:
            await engine.batcher.stop()
            log.info("stopped: the batcher is drained and the model thread joined")

    # FastAPI's own docs pages load Swagger UI from a CDN: ours serve it from a package (docs.py)
    app = FastAPI(title="similar-images", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Upload a photo (or give an id or URL): get the most similar images.")
    app.state.engine = engine
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(routes.write_router if config.allow_writes else routes.writes_off_router)
    install_docs(app)  # mounts /static/docs before /static, which would otherwise answer for it
    app.mount("/static", StaticFiles(directory=routes.STATIC), name="static")
    # Added last = outermost: headers, size cap, CORS, token, time limit.
    app.add_middleware(limits.TimeLimit, seconds=config.request_timeout)
    if config.token:
        app.add_middleware(limits.TokenAuth, token=config.token)
    if config.cors_origins:  # outside the token check: preflight requests carry no token
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(limits.BodySizeLimit, max_bytes=config.max_upload_bytes)
    app.add_middleware(limits.SecurityHeaders)
    return app


def install_error_handlers(app) -> None:
    """Every error is JSON ``{"error": ...}``; details and stack traces stay in the log."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    async def http_error(request, exc: HTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def validation_error(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return JSONResponse({"error": f"{where or 'request'}: {first.get('msg', 'invalid')}"}, status_code=422)

    async def internal_error(request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        request.app.state.engine.stats.record_error()
        return JSONResponse({"error": "internal error (see the server log)"}, status_code=500)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)
