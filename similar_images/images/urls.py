"""Download an image from an http(s) URL: redirects to http(s) only, a size cap, a timeout
for each wait and a deadline for the whole download."""

from __future__ import annotations

import http.client
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from similar_images.errors import ImageError

DEFAULT_TIMEOUT = 10.0  # seconds, for URLs: the longest wait for any one read
DEFAULT_DEADLINE = 20.0  # seconds, for URLs: the whole download, however the server drips it
DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # size cap for URL downloads
_URL_SCHEMES = ("http", "https")


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib would follow one to ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme.lower() not in _URL_SCHEMES:
            raise ImageError(f"{req.full_url}: redirect to a refused URL {newurl}", "refused url")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_url(url: str, *, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES,
              deadline: float = DEFAULT_DEADLINE) -> bytes:
    """Download ``url`` (http(s) only), at most ``max_bytes``; ``timeout`` bounds each wait for
    the server, ``deadline`` the whole download (so a dripping server cannot hold a query).

    Raises:
        ImageError: "refused url", "http error" (including redirect loops), "timeout" or "too large".
    """
    if urlsplit(url).scheme.lower() not in _URL_SCHEMES:
        raise ImageError(f"{url}: refused URL (only http and https are allowed)", "refused url")
    opener = urllib.request.build_opener(_SafeRedirects)
    request = urllib.request.Request(url, headers={"User-Agent": "similar-images"})
    end = time.monotonic() + deadline
    try:
        with opener.open(request, timeout=min(timeout, deadline)) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise ImageError(f"{url}: too large ({int(length)} bytes, limit {max_bytes})", "too large")
            return _read_capped(response, url, max_bytes, end=end, timeout=timeout, deadline=deadline)
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise ImageError(f"{url}: too many redirects (a redirect loop?)", "http error") from None
        raise ImageError(f"{url}: HTTP error {exc.code} {str(exc.reason).splitlines()[0]}", "http error") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            raise ImageError(f"{url}: timed out after {timeout:g} s", "timeout") from None
        raise ImageError(f"{url}: cannot connect ({exc.reason})", "http error") from None
    except TimeoutError:
        raise ImageError(f"{url}: timed out after {timeout:g} s", "timeout") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, malformed URL, bad chunking
        detail = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise ImageError(f"{url}: download failed ({detail})", "http error") from None


def _read_capped(response, url: str, max_bytes: int, *, end: float, timeout: float, deadline: float) -> bytes:
    chunks, total, late = [], 0, ImageError(f"{url}: not downloaded within the {deadline:g} s deadline", "timeout")
    sock = getattr(getattr(response.fp, "raw", None), "_sock", None)
    while (left := end - time.monotonic()) > 0:
        if sock is not None:
            sock.settimeout(max(min(timeout, left), 0.001))
        try:
            chunk = response.read1(64 * 1024)  # what has arrived: a drip cannot stretch one read
        except TimeoutError as exc:  # the deadline's, when it cut this wait short
            raise (late if left < timeout else exc) from None
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise ImageError(f"{url}: too large (more than {max_bytes} bytes)", "too large")
        chunks.append(chunk)
    raise late
