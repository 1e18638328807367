"""Open and decode images: paths, http(s) URLs, raw bytes or PIL images to RGB arrays.

Pure preprocessing, no model: :func:`load_image` returns an RGB ``PIL.Image`` with its
EXIF orientation applied, :func:`to_model_input` resizes it to a model's input.

Resize policy: a plain resize to the model input (``224 x 224`` for VGG16), aspect ratio
not kept, as Keras' ``load_img(target_size=...)`` did in the original demo, but with
Pillow's antialiased bilinear filter instead of nearest neighbour (see :data:`RESAMPLE`).

Every failure raises :class:`~similar_images.errors.ImageError` with a one-line
message naming the source and saying why, and a stable ``reason`` code.
"""

from __future__ import annotations

import http.client
import io
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from similar_images.errors import ImageError

logger = logging.getLogger(__name__)

Source = str | os.PathLike | bytes | bytearray | memoryview | Image.Image

DEFAULT_TIMEOUT = 10.0  # seconds, for URLs: the longest wait for any one read
DEFAULT_DEADLINE = 20.0  # seconds, for URLs: the whole download, however the server drips it
DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # size cap for URL downloads
RESAMPLE = Image.Resampling.BILINEAR  # antialiased when shrinking
_URL_SCHEMES = ("http", "https")
_ROTATING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_EXIF_ORIENTATION_TAG = 0x0112


def load_image(
    source: Source,
    *,
    target_size: tuple[int, int] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    deadline: float = DEFAULT_DEADLINE,
) -> Image.Image:
    """Load an image as RGB with its EXIF orientation applied.

    Args:
        source: a file path, an ``http(s)://`` URL, the bytes of an image file (an
            upload), or a ``PIL.Image``.
        target_size: ``(height, width)`` the image will be resized to later. Only a
            decoding hint: JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8)
            that keeps both sides at least this large, which is much faster. The image
            is not resized here.
        timeout: seconds to wait for a URL's server (connect and each read).
        max_bytes: largest download accepted from a URL.
        deadline: seconds for a URL's whole download.

    Returns:
        An RGB image (``mode == "RGB"``), fully loaded.

    Raises:
        ImageError: with ``reason`` one of "not found", "unreadable", "not an image",
            "corrupt", "too large", "refused url", "http error", "timeout".
    """
    if isinstance(source, Image.Image):
        return _finish(source, "<PIL image>")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return _decode(io.BytesIO(data), f"<{len(data)} bytes>", target_size)
    text = os.fspath(source)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if "://" in text:
        data = fetch_url(text, timeout=timeout, max_bytes=max_bytes, deadline=deadline)
        return _decode(io.BytesIO(data), text, target_size)
    return _decode_file(Path(text), target_size)


def to_model_input(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB image to a model's input (aspect ratio not kept).

    Args:
        image: an RGB image, as :func:`load_image` returns.
        size: ``(height, width)`` of the model input.

    Returns:
        ``(height, width, 3)`` uint8 RGB array.
    """
    height, width = size
    if image.mode != "RGB":
        image = to_rgb(image)
    if image.size != (width, height):
        image = image.resize((width, height), RESAMPLE)
    return np.asarray(image, dtype=np.uint8)  # (h, w, 3) uint8


def load_for_model(source: Source, size: tuple[int, int], **options) -> np.ndarray:
    """:func:`load_image` then :func:`to_model_input`: ``(h, w, 3)`` uint8 RGB."""
    return to_model_input(load_image(source, target_size=size, **options), size)


def prepare_batch(images: Sequence[Image.Image], size: tuple[int, int]) -> np.ndarray:
    """Stack images resized to ``size`` into one batch: ``(n, h, w, 3)`` uint8 RGB."""
    if not images:
        return np.zeros((0, size[0], size[1], 3), dtype=np.uint8)
    return np.stack([to_model_input(image, size) for image in images])


# --- URLs -----------------------------------------------------------------------------


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


# --- decoding -------------------------------------------------------------------------


def _decode_file(path: Path, target_size: tuple[int, int] | None) -> Image.Image:
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise ImageError(f"{path}: not found", "not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image file", "not an image") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot open ({exc.strerror or exc})", "unreadable") from None
    except ValueError:  # a path with a NUL byte names no file
        raise ImageError(f"{str(path)!r}: not a valid file path", "not found") from None
    with handle:
        return _decode(handle, str(path), target_size)


def _decode(stream, label: str, target_size: tuple[int, int] | None) -> Image.Image:
    """Open, check the pixel cap, draft, load and convert one image to RGB."""
    try:
        image = Image.open(stream)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{label}: too large ({exc})", "too large") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image ({_describe_unknown(stream)})", "not an image") from None
    except Exception as exc:  # noqa: BLE001 - a broken header can raise nearly anything
        raise ImageError(f"{label}: corrupt image header ({_exc_text(exc)})", "corrupt") from None
    with image:
        _check_pixels(image, label)
        if target_size is not None and image.format == "JPEG":
            image.draft("RGB", _draft_size(image, target_size))
        try:
            image.load()
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{label}: too large ({exc})", "too large") from None
        except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ...
            raise ImageError(f"{label}: truncated or corrupt ({_exc_text(exc)})", "corrupt") from None
        return _finish(image, label)


def _check_pixels(image: Image.Image, label: str) -> None:
    """Pillow only warns between 1x and 2x ``MAX_IMAGE_PIXELS``; treat that as an error too.

    Done here rather than with a warnings filter, which is process-global and not
    thread-safe (images are decoded in a thread pool).
    """
    limit = Image.MAX_IMAGE_PIXELS
    width, height = image.size
    if limit is not None and width * height > limit:
        raise ImageError(
            f"{label}: too large ({width}x{height} = {width * height} pixels, "
            f"limit {limit}; possible decompression bomb)",
            "too large",
        )


def _draft_size(image: Image.Image, target_size: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` to ask the JPEG decoder for, before the EXIF rotation."""
    height, width = target_size
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - broken EXIF: decode at full size
        return image.size
    if orientation in _ROTATING_ORIENTATIONS:
        return height, width
    return width, height


def _finish(image: Image.Image, label: str) -> Image.Image:
    try:
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"{label}: corrupt ({_exc_text(exc)})", "corrupt") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB.

    * transparency (RGBA, LA, PA, P or L with a transparent colour): composited on white;
    * 16-bit grey (``I;16*``): scaled to 8 bits (value / 257), not clipped;
    * 32-bit ``I`` and float ``F``: scaled by their range (see :func:`_wide_to_8bit`);
    * CMYK, YCbCr, L, 1, P: Pillow's conversion.
    """
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return Image.fromarray(_wide_to_8bit(image), "L").convert("RGB")
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in image.info


def _wide_to_8bit(image: Image.Image) -> np.ndarray:
    """16-bit, 32-bit or float grey to uint8 ``(h, w)``.

    ``I;16*``: value / 257 (so 65535 -> 255). ``I``: values within 0..255 kept, within
    0..65535 divided by 257, otherwise stretched from min..max. ``F``: 0..1 times 255,
    0..255 kept, otherwise stretched.
    """
    values = np.asarray(image).astype(np.float64)  # (h, w)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode.startswith("I;16"):
        scaled = values / 257.0
    elif image.mode == "F" and low >= 0.0 and high <= 1.0:
        scaled = values * 255.0
    elif low >= 0.0 and high <= 255.0:
        scaled = values
    elif image.mode != "F" and low >= 0.0 and high <= 65535.0:
        scaled = values / 257.0
    else:
        scaled = (values - low) * (255.0 / max(high - low, 1e-12))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _describe_unknown(stream) -> str:
    try:
        stream.seek(0, io.SEEK_END)
        if stream.tell() == 0:
            return "empty file"
    except (OSError, ValueError):
        pass
    return "unknown file format"


def _exc_text(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

