"""Decoded image -> a model's input: a plain resize, or a resize of the shorter side and a
centre crop (:class:`Fit`, open_clip's transform); both give ``(h, w, 3)`` uint8 RGB."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from similar_images.images.decode import Source, load_image, to_rgb

RESAMPLE = Image.Resampling.BILINEAR  # the plain resize's filter; antialiased when shrinking


@dataclass(frozen=True)
class Fit:
    """Resize the shorter side to ``short_side`` with ``resample`` (aspect ratio kept), then
    crop the centre ``size`` (height, width): torchvision's ``Resize(short_side)`` and
    ``CenterCrop(size)`` on a PIL image, the same arithmetic, so the same pixels. CLIP
    models use it (open_clip's transform, bicubic); the others use a plain resize.
    """

    size: tuple[int, int]
    short_side: int
    resample: int = Image.Resampling.BICUBIC

    def __post_init__(self):
        if self.short_side < max(self.size):
            raise ValueError(f"short_side {self.short_side} is smaller than the crop {self.size}")

    def apply(self, image: Image.Image) -> Image.Image:
        """The resized and cropped image (``self.size``)."""
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.short_side * long / short)  # torchvision truncates
        new_size = (self.short_side, new_long) if width <= height else (new_long, self.short_side)
        if new_size != image.size:
            image = image.resize(new_size, self.resample)
        crop_h, crop_w = self.size
        top = int(round((image.height - crop_h) / 2.0))
        left = int(round((image.width - crop_w) / 2.0))
        return image.crop((left, top, left + crop_w, top + crop_h))


Size = tuple[int, int] | Fit  # what every decode path takes: a plain resize's (h, w), or a Fit


def fit_of(extractor) -> Size:
    """How images are fitted to ``extractor``: its ``fit`` (a :class:`Fit`) when it has one,
    else a plain resize to its ``input_size``."""
    fit = getattr(extractor, "fit", None)
    return fit if isinstance(fit, Fit) else tuple(extractor.input_size)


def _shape(size: Size) -> tuple[int, int]:
    return size.size if isinstance(size, Fit) else tuple(size)


def _decode_size(size: Size) -> tuple[int, int]:
    """The JPEG decoder's size hint: both sides at least this large."""
    return (size.short_side, size.short_side) if isinstance(size, Fit) else tuple(size)


def to_model_input(image: Image.Image, size: Size) -> np.ndarray:
    """Fit an RGB image to a model's input.

    Args:
        image: an RGB image, as :func:`load_image` returns.
        size: ``(height, width)`` of the model input (a plain resize, aspect ratio not
            kept), or a :class:`Fit`.

    Returns:
        ``(height, width, 3)`` uint8 RGB array.
    """
    if image.mode != "RGB":
        image = to_rgb(image)
    if isinstance(size, Fit):
        image = size.apply(image)
    else:
        height, width = size
        if image.size != (width, height):
            image = image.resize((width, height), RESAMPLE)
    return np.asarray(image, dtype=np.uint8)  # (h, w, 3) uint8


def load_for_model(source: Source, size: Size, **options) -> np.ndarray:
    """:func:`load_image` then :func:`to_model_input`: ``(h, w, 3)`` uint8 RGB."""
    return to_model_input(load_image(source, target_size=_decode_size(size), **options), size)


def prepare_batch(images: Sequence[Image.Image], size: Size) -> np.ndarray:
    """Stack images fitted to ``size`` into one batch: ``(n, h, w, 3)`` uint8 RGB."""
    if not images:
        return np.zeros((0, *_shape(size), 3), dtype=np.uint8)
    return np.stack([to_model_input(image, size) for image in images])
