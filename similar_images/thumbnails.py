"""Small JPEG thumbnails for showing images in a notebook or an HTML page.

A thumbnail is decoded at reduced scale where the format allows it (JPEG draft mode),
so showing eight COCO photos never decodes or sends a full-size file.
"""

from __future__ import annotations

import functools
import io
import logging
import os
from pathlib import Path

from PIL import Image, ImageDraw

from similar_images.errors import ImageError
from similar_images.images import load_image, to_rgb

logger = logging.getLogger(__name__)

DEFAULT_SIZE = 160
JPEG_QUALITY = 85


def thumbnail_jpeg(source: str | os.PathLike | Image.Image, size: int = DEFAULT_SIZE) -> bytes:
    """JPEG bytes of ``source`` scaled down to fit in a ``size`` x ``size`` box.

    Args:
        source: an image file path or an open PIL image (left unchanged).
        size: the longest side of the thumbnail in pixels; smaller images are kept
            at their size.

    Returns:
        The encoded JPEG (RGB, aspect ratio kept).

    Raises:
        ImageError: the file is missing or is not a readable image.
    """
    if isinstance(source, Image.Image):
        return _encode(_shrink(source.copy(), size))
    path = Path(source)
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found", "not found") from None
    return _cached_file_thumbnail(str(path), mtime, size)


@functools.lru_cache(maxsize=1024)
def _cached_file_thumbnail(path: str, mtime_ns: int, size: int) -> bytes:
    # mtime_ns is part of the cache key so a replaced file gets a fresh thumbnail.
    # Decoded by the one image loader: EXIF rotation, RGB, the pixel cap, and the JPEG
    # decoder's reduced scale (1/2, 1/4, 1/8) for a thumbnail-sized target.
    return _encode(_shrink(load_image(path, target_size=(size, size)), size))


def placeholder_jpeg(text: str = "no image", size: int = DEFAULT_SIZE) -> bytes:
    """A grey square with ``text`` on it, shown where a thumbnail cannot be made."""
    img = Image.new("RGB", (size, size), (225, 225, 225))
    ImageDraw.Draw(img).text((8, size // 2 - 6), text, fill=(90, 90, 90))
    return _encode(img)


def _shrink(img: Image.Image, size: int) -> Image.Image:
    img = to_rgb(img)
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return img


def _encode(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()
