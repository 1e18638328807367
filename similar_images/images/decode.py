"""Decode an image source (path, URL, bytes, PIL image) to an RGB ``PIL.Image`` with its EXIF
orientation applied; every failure is an :class:`~similar_images.errors.ImageError`."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from similar_images.errors import ImageError
from similar_images.images.fetch import fetch_url

Source = str | os.PathLike | bytes | bytearray | memoryview | Image.Image

_ROTATING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_EXIF_ORIENTATION_TAG = 0x0112


def load_image(
    source: Source,
    *,
    target_size: tuple[int, int] | None = None,
    timeout: float | None = None,
    max_bytes: int | None = None,
    deadline: float | None = None,
) -> Image.Image:
    """Load an image as RGB with its EXIF orientation applied.

    Args:
        source: a file path, an ``http(s)://`` URL, the bytes of an image file (an
            upload), or a ``PIL.Image``.
        target_size: ``(height, width)`` the image will be resized to later. Only a
            decoding hint: JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8)
            that keeps both sides at least this large, which is much faster. The image
            is not resized here.
        timeout: longest silence accepted from a URL's server, in seconds (None:
            :data:`~similar_images.images.fetch.DEFAULT_TIMEOUT`).
        max_bytes: largest download accepted from a URL (None: ``DEFAULT_MAX_BYTES``).
        deadline: seconds for a URL's whole fetch: connect, headers, body and redirects
            (None: ``DEFAULT_DEADLINE``).

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
