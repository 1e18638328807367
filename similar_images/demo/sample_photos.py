"""A small offline photo collection for the demo and the tests.

Real photos ship inside packages this project already installs (scikit-image,
scikit-learn, matplotlib), so they are there on any machine without internet. Each
photo is written as a JPEG together with edited copies (crop, flip, resize, JPEG
recompression, small rotation, tone change), so that a query has true neighbours: the
edited copies of the same photo. Names are ``<photo>.jpg`` for the original and
``<photo>__<edit>.jpg`` for an edited copy; :func:`group_of` maps both to ``<photo>``.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from similar_images import edits as photo_edits
from similar_images.fileio.files import atomic_path

log = logging.getLogger(__name__)

SEPARATOR = "__"
JPEG_QUALITY = 92


def skimage_loader(name: str) -> Callable[[], np.ndarray]:
    """A loader of scikit-image's sample image ``name``: ``() -> (h, w[, 3]) uint8``."""
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


def _motorcycle() -> np.ndarray:
    from skimage import data

    return data.stereo_motorcycle()[0]  # left view of the stereo pair


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


def matplotlib_loader(filename: str) -> Callable[[], np.ndarray]:
    """A loader of matplotlib's sample data file ``filename`` as RGB: ``() -> (h, w, 3) uint8``."""
    def load() -> np.ndarray:
        import matplotlib.cbook

        with Image.open(matplotlib.cbook.get_sample_data(filename, asfileobj=False)) as img:
            return np.asarray(img.convert("RGB"))

    return load


# photo name -> loader returning (h, w, 3) or (h, w) uint8; all offline.
PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": skimage_loader("astronaut"),
    "coffee": skimage_loader("coffee"),
    "chelsea": skimage_loader("chelsea"),  # a cat
    "rocket": skimage_loader("rocket"),
    "motorcycle": _motorcycle,
    "hubble": skimage_loader("hubble_deep_field"),
    "retina": skimage_loader("retina"),
    "ihc": skimage_loader("immunohistochemistry"),  # stained tissue under a microscope
    "camera": skimage_loader("camera"),  # black and white: a cameraman
    "moon": skimage_loader("moon"),
    "coins": skimage_loader("coins"),
    "brick": skimage_loader("brick"),
    "grass": skimage_loader("grass"),
    "gravel": skimage_loader("gravel"),
    "china": _sklearn("china.jpg"),  # a temple
    "flower": _sklearn("flower.jpg"),
    "grace_hopper": matplotlib_loader("grace_hopper.jpg"),
}


def load_photo(name: str) -> Image.Image:
    """The original photo ``name`` (one of :data:`PHOTOS`) as an RGB image."""
    try:
        loader = PHOTOS[name]
    except KeyError:
        raise ValueError(f"unknown photo {name!r}; choose one of: {', '.join(PHOTOS)}") from None
    array = np.asarray(loader())
    if array.dtype != np.uint8:
        array = (array > 0).astype(np.uint8) * 255 if array.dtype == bool else array.astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


# --- edited copies: the package's photo edits (similar_images.edits), at these strengths ---


def query_edit(img: Image.Image) -> Image.Image:
    """The held-out query: a different crop, a rotation the other way and recompression,
    so it is in no database built from :data:`EDITS`."""
    return photo_edits.jpeg_recompress(photo_edits.rotate_and_crop(img, -4, keep=0.75), quality=30)


# edit name -> function; each returns a new RGB image
EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "crop": functools.partial(photo_edits.crop_at, fraction=0.7, where=1 / 3),
    "flip": photo_edits.hflip,
    "small": functools.partial(photo_edits.resize_half, scale=0.35, resample=Image.Resampling.LANCZOS),
    "jpeg": functools.partial(photo_edits.jpeg_recompress, quality=12),
    "rotate": photo_edits.rotate_and_crop,
    "tone": functools.partial(photo_edits.brightness_contrast, brightness=1.25, contrast=1.3),
}


def sample_name(photo: str, edit: str | None = None) -> str:
    """File name of ``photo`` (``edit=None``: the original) or of its edited copy."""
    return f"{photo}.jpg" if edit is None else f"{photo}{SEPARATOR}{edit}.jpg"


def group_of(name: str) -> str:
    """The original photo a sample file belongs to: ``"coffee__crop.jpg"`` -> ``"coffee"``."""
    return Path(name).stem.split(SEPARATOR)[0]


def save_jpeg(img: Image.Image, path: str | os.PathLike, quality: int = JPEG_QUALITY) -> None:
    """Write ``img`` as a JPEG atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        img.save(tmp, format="JPEG", quality=quality)


def write_collection(
    folder: str | os.PathLike,
    *,
    photos: Iterable[str] | None = None,
    edits: Iterable[str] | None = None,
    show_progress: bool = True,
) -> list[str]:
    """Write originals and edited copies into ``folder``.

    Args:
        folder: created if missing.
        photos: names from :data:`PHOTOS` (default: all).
        edits: names from :data:`EDITS` (default: all).
        show_progress: show a progress bar.

    Returns:
        The file names written (relative to ``folder``), sorted.
    """
    from tqdm.auto import tqdm

    photos = list(PHOTOS if photos is None else photos)
    edits = list(EDITS if edits is None else edits)
    unknown = [e for e in edits if e not in EDITS]
    if unknown:
        raise ValueError(f"unknown edit {unknown[0]!r}; choose from: {', '.join(EDITS)}")
    folder = Path(folder)
    names = []
    for photo in tqdm(photos, desc="sample photos", unit="photo", disable=not show_progress):
        original = load_photo(photo)
        save_jpeg(original, folder / sample_name(photo))
        names.append(sample_name(photo))
        for edit in edits:
            save_jpeg(EDITS[edit](original), folder / sample_name(photo, edit))
            names.append(sample_name(photo, edit))
    log.info("wrote %d sample photos into %s", len(names), folder)
    return sorted(names)


def write_query(path: str | os.PathLike, photo: str = "chelsea") -> Path:
    """Write the held-out query version of ``photo`` (see :func:`query_edit`) to ``path``."""
    save_jpeg(query_edit(load_photo(photo)), path)
    return Path(path)
