"""Photo edits: the one set of image edits of the package.

Each edit is a pure function ``PIL.Image (RGB) -> PIL.Image (RGB)``, deterministic, so
the same folder always gives the same queries. :data:`EDITS` lists, by the name reports
show, the edits of the robustness (copy detection) report; the demo's sample collection
(:mod:`similar_images.demo.sample_photos`) builds its edited copies from the same
functions with other strengths.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

Edit = Callable[[Image.Image], Image.Image]


def crop_center(image: Image.Image, fraction: float = 0.7) -> Image.Image:
    """Keep the central ``fraction`` of the width and of the height."""
    return crop_at(image, fraction, 0.5)


def crop_at(image: Image.Image, fraction: float, where: float) -> Image.Image:
    """Keep ``fraction`` of the width and height; ``where`` places the window (0: top left,
    0.5: centre, 1: bottom right) within the room left."""
    w, h = image.size
    cw, ch = max(1, round(w * fraction)), max(1, round(h * fraction))
    left, top = round((w - cw) * where), round((h - ch) * where)
    return image.crop((left, top, left + cw, top + ch))


def resize_half(image: Image.Image, scale: float = 0.5,
                resample: Image.Resampling = Image.Resampling.BILINEAR) -> Image.Image:
    """Downscale both sides by ``scale``."""
    w, h = image.size
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample)


def jpeg_recompress(image: Image.Image, quality: int = 30) -> Image.Image:
    """Encode as JPEG at ``quality`` and decode again."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def hflip(image: Image.Image) -> Image.Image:
    """Mirror left to right."""
    return ImageOps.mirror(image)


def rotate(image: Image.Image, degrees: float = 10.0,
           resample: Image.Resampling = Image.Resampling.BILINEAR) -> Image.Image:
    """Rotate counter-clockwise by ``degrees`` keeping the size; corners filled black."""
    return image.rotate(degrees, resample=resample, expand=False)


def rotate_and_crop(image: Image.Image, degrees: float = 7.0, keep: float = 0.8) -> Image.Image:
    """Rotate a few degrees, then crop away the empty corners (the central ``keep``)."""
    return crop_center(rotate(image, degrees, Image.Resampling.BICUBIC), keep)


def brightness_contrast(image: Image.Image, brightness: float = 1.3, contrast: float = 0.7) -> Image.Image:
    """Brighten by ``brightness`` then scale contrast by ``contrast`` (1.0 = unchanged)."""
    brighter = ImageEnhance.Brightness(image).enhance(brightness)
    return ImageEnhance.Contrast(brighter).enhance(contrast)


def grayscale(image: Image.Image) -> Image.Image:
    """Drop the colour (still a 3-channel RGB image)."""
    return ImageOps.grayscale(image).convert("RGB")


def text_overlay(image: Image.Image, text: str = "similar-images (c) 2026") -> Image.Image:
    """Write ``text`` across the lower part of the image, white on a dark band.

    Uses Pillow's built-in default font, scaled to about 1/12 of the image height.
    """
    out = image.convert("RGB").copy()
    w, h = out.size
    size = max(10, h // 12)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow without scalable default font
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(out)
    top = int(h * 0.7)
    left, _, right, bottom = draw.textbbox((w // 20, top), text, font=font)
    draw.rectangle((left - 4, top - 4, right + 4, bottom + 4), fill=(20, 20, 20))
    draw.text((w // 20, top), text, fill=(255, 255, 255), font=font)
    return out


# name shown in reports and typed after --edits -> edit; the order is the order of report rows.
EDITS: dict[str, Edit] = {
    "crop70": crop_center,
    "resize50": resize_half,
    "jpeg30": jpeg_recompress,
    "hflip": hflip,
    "rotate10": rotate,
    "brightness-contrast": brightness_contrast,
    "grayscale": grayscale,
    "text": text_overlay,
}


def select_edits(names: list[str] | None = None) -> dict[str, Edit]:
    """The edits called ``names`` (all of them when None), in :data:`EDITS` order.

    Raises:
        ValueError: a name is not in :data:`EDITS`; the message lists the valid ones.
    """
    if not names:
        return dict(EDITS)
    unknown = [n for n in names if n not in EDITS]
    if unknown:
        raise ValueError(f"unknown edit {unknown[0]!r}; choose from: {', '.join(EDITS)}")
    return {name: fn for name, fn in EDITS.items() if name in names}
