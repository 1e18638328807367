"""Test data for the service tests, made on the fly."""

from __future__ import annotations

import io

from _index_data import pattern_image
from PIL import Image


def image_bytes(i: int = 0, size=(40, 30), fmt: str = "PNG") -> bytes:
    """The file bytes of the tiny model's pattern image ``i`` (PNG: lossless, finds itself)."""
    out = io.BytesIO()
    pattern_image(i, size).save(out, format=fmt)
    return out.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A small PNG file that decodes to ``width x height`` pixels (a decompression bomb)."""
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, format="PNG", optimize=True)
    return out.getvalue()
