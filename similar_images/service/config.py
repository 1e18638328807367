"""The service's settings: one frozen dataclass, given by the CLI or a test."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)


@dataclass(frozen=True)
class ServiceConfig:
    """What the service allows and how it batches.

    Attributes:
        token: bearer token required by every endpoint except the page and its static
            files; None: no authentication (writes are then impossible).
        max_upload_bytes: largest request body; larger ones get 413 while streaming.
        max_pixels: largest image (width x height) decoded; larger ones get 400.
        allow_urls: accept ``{"url": ...}`` queries.
        allow_private_urls: also fetch URLs whose host resolves to a private, loopback,
            link-local, ... address (intranets, tests).
        url_timeout: longest silence accepted from a URL's server (connect, any read), seconds.
        url_deadline: seconds for a whole URL fetch: connects, headers, body, redirects.
        max_url_fetches: URL fetches running at once (one thread each); more requests wait.
        url_max_bytes: largest URL download.
        max_redirects: redirects followed, each checked again.
        allow_writes: expose ``POST /api/images`` and ``DELETE /api/images/{id}``.
        cors_origins: origins allowed by CORS; empty: no CORS headers.
        request_timeout: seconds a request may take before it gets 503.
        max_k: largest ``k`` a client may ask for.
        default_k: ``k`` when the client gives none.
        batch_size: most images per model call.
        batch_wait_ms: how long a batch waits for requests already being decoded.
    """

    token: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    allow_urls: bool = False
    allow_private_urls: bool = False
    url_timeout: float = 10.0
    url_deadline: float = 20.0
    max_url_fetches: int = 8
    url_max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_redirects: int = 3
    allow_writes: bool = False
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    request_timeout: float = 30.0
    max_k: int = 100
    default_k: int = 8
    batch_size: int = 16
    batch_wait_ms: float = 5.0

    def __post_init__(self):
        if self.allow_writes and not self.token:
            raise ValueError("--allow-writes needs --token: writes always need the token")
        if self.allow_private_urls and not self.allow_urls:
            raise ValueError("--allow-private-urls needs --allow-urls")
        for name in ("max_upload_bytes", "max_pixels", "url_max_bytes", "max_k", "default_k", "batch_size",
                     "max_url_fetches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.default_k <= self.max_k:
            raise ValueError(f"default_k must be between 1 and max_k ({self.max_k}), got {self.default_k}")
        if min(self.request_timeout, self.url_timeout, self.url_deadline) <= 0 or self.batch_wait_ms < 0:
            raise ValueError("timeouts must be positive and batch_wait_ms not negative")
        if self.max_redirects < 0:
            raise ValueError(f"max_redirects must not be negative, got {self.max_redirects}")
