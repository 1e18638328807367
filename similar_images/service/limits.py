"""Limits that hold before a route runs: body size, time, token; and upload checks.

The ASGI middlewares here are plain callables (no Starlette base class), so they see
the raw request stream: :class:`BodySizeLimit` counts bytes as they arrive and answers
413 the moment the cap is passed, before anything beyond it is read or buffered.
"""

from __future__ import annotations

import hmac
import io
import json
import logging

import anyio
from PIL import Image

from similar_images.errors import ImageError
from similar_images.service.docs import DOCS_PATHS, DOCS_POLICY

log = logging.getLogger(__name__)

# magic bytes -> format; the client's file name and MIME type are never trusted
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}
PUBLIC_PATHS = ("/", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)


def sniff_image(data: bytes) -> str:
    """The image format of ``data`` from its first bytes.

    Raises:
        ImageError: "not an image" when no supported signature matches.
    """
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    head = data[:8]
    if not data:
        shown = "the file is empty"
    elif head.isascii() and head.decode("ascii").isprintable():  # text: show it as text, not a bytes repr
        shown = f"it starts with the text \"{head.decode('ascii')}\""
    else:
        shown = f"its first bytes are {head.hex(' ')}"
    raise ImageError(f"not an image ({shown}; send a JPEG, PNG, GIF, WebP, BMP or TIFF file)", "not an image")


def readable_bytes(count: int) -> str:
    """``20971520`` -> ``"20 MB"`` (binary megabytes, as the options are given)."""
    for unit, size in (("MB", 2**20), ("kB", 2**10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} bytes"


def readable_pixels(count: int) -> str:
    """``89478485`` -> ``"89.5 megapixels"``."""
    return f"{count / 1e6:.3g} megapixels" if count >= 100_000 else f"{count} pixels"


def check_pixels(data: bytes, max_pixels: int) -> tuple[int, int]:
    """Read only the header of ``data`` and refuse more than ``max_pixels`` pixels.

    Returns:
        ``(width, height)``.

    Raises:
        ImageError: "too large" (a decompression bomb among them) or "corrupt".
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        raise ImageError(f"too large (more than {readable_pixels(max_pixels)})", "too large") from None
    except Exception as exc:  # noqa: BLE001 - a broken header can raise nearly anything
        raise ImageError(f"corrupt image header ({type(exc).__name__})", "corrupt") from None
    if width * height > max_pixels:
        raise ImageError(f"too large ({width} x {height}, {readable_pixels(width * height)}; the limit is "
                         f"{readable_pixels(max_pixels)})", "too large")
    return width, height


def token_ok(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (constant time)."""
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].encode(), token.encode())


async def send_error(send, status: int, message: str, headers: tuple = ()) -> None:
    """Send a whole JSON ``{"error": message}`` response on a raw ASGI ``send``."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """413 for a body over ``max_bytes``: by its Content-Length, or while it streams in.

    When the cap is passed mid-stream the 413 is sent at once, the application is told
    the client went away, and whatever it tries to send afterwards is dropped.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await send_error(send, 413, self._message())
        state = {"received": 0, "refused": False}

        async def limited_receive():
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["refused"] = True
                    await send_error(send, 413, self._message())
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not state["refused"]:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["refused"]:
                raise
            log.debug("request stopped after its body passed the cap", exc_info=True)

    def _message(self) -> str:
        return f"request body too large (the limit is {readable_bytes(self.max_bytes)})"


class TimeLimit:
    """503 for a request that takes longer than ``seconds`` (if nothing was sent yet).

    Writes (``POST /api/images``, ``DELETE``) are not cut off: a client told "timed out"
    could not know whether its crash-safe write went through.
    """

    def __init__(self, app, seconds: float):
        self.app, self.seconds = app, seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or _is_write(scope):
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            started = True
            await send(message)

        try:
            with anyio.fail_after(self.seconds):
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            log.warning("%s %s: over the %g s time limit", scope.get("method"), scope.get("path"), self.seconds)
            if not started:
                await send_error(send, 503, f"request took longer than the {self.seconds:g} s limit")


class TokenAuth:
    """401 unless the request carries ``Authorization: Bearer <token>``.

    The page and its static files are public: they hold no data, and the page asks for
    the token before it calls the API.
    """

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or _is_public(scope.get("path", "")):
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"authorization")
        if not token_ok(header.decode("latin-1") if header else None, self.token):
            return await send_error(send, 401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                                    headers=((b"www-authenticate", b"Bearer"),))
        return await self.app(scope, receive, send)


class SecurityHeaders:
    """``nosniff``, no framing, and a same-origin content policy on every response."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    )
    PAGE_POLICY = (b"content-security-policy",
                   b"default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
                   b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")

        async def with_headers(message):
            if message["type"] == "http.response.start":
                extra = [*self.HEADERS, DOCS_POLICY if path in DOCS_PATHS else self.PAGE_POLICY]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def _is_write(scope) -> bool:
    return scope.get("method") == "DELETE" or (scope.get("method") == "POST" and scope.get("path") == "/api/images")


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
