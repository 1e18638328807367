"""Thumbnails: small JPEGs, right orientation and colours, clear errors."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from similar_images.errors import ImageError
from similar_images.thumbnails import placeholder_jpeg, thumbnail_jpeg


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG"
    return img


def _photo(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def test_a_large_photo_becomes_a_small_jpeg_with_its_aspect_ratio(tmp_path):
    path = tmp_path / "big.jpg"
    _photo(2000, 1500).save(path, quality=90)
    data = thumbnail_jpeg(path, size=160)
    assert _open(data).size == (160, 120)
    assert len(data) < path.stat().st_size / 10


def test_small_images_are_not_enlarged(tmp_path):
    path = tmp_path / "small.png"
    _photo(60, 40).save(path)
    assert _open(thumbnail_jpeg(path, size=160)).size == (60, 40)


def test_a_pil_image_is_left_unchanged():
    img = _photo(400, 200)
    assert _open(thumbnail_jpeg(img, size=100)).size == (100, 50)
    assert img.size == (400, 200)


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees: portrait
    _photo(200, 100).save(path, exif=exif)
    assert _open(thumbnail_jpeg(path, size=160)).size == (80, 160)


def test_transparency_is_white_not_black(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (50, 50), (255, 0, 0, 0)).save(path)
    pixel = _open(thumbnail_jpeg(path)).convert("RGB").getpixel((25, 25))
    assert min(pixel) > 240


def test_16_bit_greys_are_scaled_not_clipped(tmp_path):
    path = tmp_path / "grey16.png"
    Image.fromarray(np.full((20, 20), 32768, dtype=np.uint16)).save(path)
    pixel = _open(thumbnail_jpeg(path)).convert("L").getpixel((10, 10))
    assert 120 <= pixel <= 136


@pytest.mark.parametrize("content, reason", [
    (None, "not found"),
    (b"hello, not an image", "not an image"),
])
def test_bad_files_raise_image_error(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError) as err:
        thumbnail_jpeg(path)
    assert err.value.reason == reason and str(path) in str(err.value)


def test_a_truncated_jpeg_is_corrupt(tmp_path):
    path = tmp_path / "cut.jpg"
    buf = io.BytesIO()
    _photo(300, 300).save(buf, format="JPEG")
    path.write_bytes(buf.getvalue()[:400])
    with pytest.raises(ImageError) as err:
        thumbnail_jpeg(path)
    assert err.value.reason == "corrupt"


def test_a_replaced_file_gets_a_new_thumbnail(tmp_path):
    path = tmp_path / "photo.jpg"
    _photo(300, 100).save(path)
    first = thumbnail_jpeg(path, size=90)
    _photo(100, 300).save(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later mtime
    assert _open(first).size == (90, 30)
    assert _open(thumbnail_jpeg(path, size=90)).size == (30, 90)


def test_placeholder_is_a_square_jpeg():
    assert _open(placeholder_jpeg("image missing", size=120)).size == (120, 120)
