"""In Ray Serve's HTTP proxy: a request no replica answered becomes a 503 to retry, not a 500.

When an ingress replica dies with requests in flight (killed, out of memory, its node
lost), Ray 2.60's proxy gets ``ActorDiedError`` for each of them and maps it to 500
(``ray.serve._private.http_util.get_http_response_status``: only timeouts, back pressure
and an unavailable deployment have their own statuses; no setting changes that). For a
500 the proxy sends nothing (``send_http_response_on_exception`` answers only 408, 429
and 503) and returns: uvicorn then answers a plain ``500 Internal Server Error``
because the application returned without starting a response.

That is the one thing this middleware looks at. Ray Serve applies the Starlette
middlewares a function named by ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` returns
(read by each proxy process when it starts, so the variable must be in the environment
Ray's processes start with: :func:`proxy_environment`). Around the proxy's own ASGI app,
:class:`NoAnswerIs503` notes whether a response was started; if the app returned (or
raised) without one, no replica answered the request, and it answers JSON 503 with
``Retry-After: 1``: the replica held no answer of its own, Ray Serve replaces it, and a
retry goes to a live replica. Every answer a replica gives (the app's own 500s included)
and every answer the proxy gives itself (404, 408, 429, 503, health) has started a
response and passes through untouched.

A replica that dies after it started its response (between the status line and the body)
cannot be turned into anything: the client sees the connection end short of the body,
never a wrong answer.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)

CALLBACK_VARIABLE = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = "similar_images.serving.proxy:proxy_middlewares"
RETRY_AFTER_S = 1
MESSAGE = "the replica that held this request stopped (it is being replaced); retry in a moment"


def proxy_environment() -> dict[str, str]:
    """The environment variable that makes Ray Serve's proxy use :func:`proxy_middlewares`:
    set it where Ray's processes start (before ``ray.init`` or ``ray start``; the container's
    environment on Kubernetes, docs/scale.md)."""
    return {CALLBACK_VARIABLE: CALLBACK}


def proxy_middlewares() -> list:
    """Ray Serve's HTTP proxy callback: the Starlette middlewares the proxy runs its app in."""
    from starlette.middleware import Middleware

    return [Middleware(NoAnswerIs503)]


class NoAnswerIs503:
    """ASGI middleware: a request the wrapped app returned from without starting a response
    is answered ``503`` with ``Retry-After``, as JSON (``{"detail": ...}``, the service's errors)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_noted(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_noted)
        except Exception:
            if started:
                raise
            log.warning("no replica answered %s %s (an exception): 503", scope.get("method"), scope.get("path"),
                        exc_info=True)
            await _send_503(send)
            return
        if not started:
            log.warning("no replica answered %s %s: 503", scope.get("method"), scope.get("path"))
            await _send_503(send)


async def _send_503(send) -> None:
    body = json.dumps({"detail": MESSAGE}).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(RETRY_AFTER_S).encode())]})
    await send({"type": "http.response.body", "body": body})
