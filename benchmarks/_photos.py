"""Photo-like JPEG collections for the benchmarks, made once and kept in a cache folder.

Each image is a random crop of a real photo shipped with scikit-image, resized to
640x480 (COCO's usual size), mirrored half of the time, saved at quality 90: JPEGs that
decode like camera photos, made offline. A collection is made in parallel processes,
each file under a temporary name renamed when complete, so an interrupted run resumes
where it stopped and never leaves a half-written JPEG behind.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
          "stereo_motorcycle", "cat", "colorwheel", "retina")
SIZE = (640, 480)
BLOCK = 500  # images per process task


def photo_name(i: int) -> str:
    return f"img{i:05d}.jpg"


def default_folder(count: int) -> Path:
    """``<similar-images cache>/benchmarks/photos-640x480``; one folder serves every count (prefixes)."""
    from similar_images.models.speeds import cache_root

    del count  # image i is the same whatever the count: a larger run reuses a smaller one's files
    return cache_root() / "benchmarks" / "photos-640x480"


def photo_collection(folder: str | os.PathLike, count: int, *, workers: int | None = None,
                     show_progress: bool = True) -> list[str]:
    """Names of ``count`` photo-like JPEGs in ``folder``, making the missing ones.

    Image ``i`` depends only on ``i`` (its own seed), so the first N images of any
    collection are the same files and a grown collection keeps its old members.
    """
    from tqdm.auto import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [photo_name(i) for i in range(count)]
    missing = [i for i, name in enumerate(names) if not (folder / name).exists()]
    if missing:
        blocks = [missing[i:i + BLOCK] for i in range(0, len(missing), BLOCK)]
        with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool, \
                tqdm(total=len(missing), desc="photos", unit="img", disable=not show_progress) as bar:
            for done in pool.map(_make_block, [str(folder)] * len(blocks), blocks):
                bar.update(done)
    return names


def write_file_list(path: str | os.PathLike, names: list[str]) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    os.replace(tmp, path)
    return path


_SOURCES: list = []


def _sources():
    """The source photos, loaded once per process."""
    if not _SOURCES:
        import skimage.data
        from PIL import Image

        for name in PHOTOS:
            image = getattr(skimage.data, name)()
            image = image[0] if isinstance(image, tuple) else image
            _SOURCES.append(Image.fromarray(image).convert("RGB"))
    return _SOURCES


def make_photo(i: int):
    """Photo-like image number ``i`` (a PIL image), the same on every machine."""
    from PIL import Image, ImageOps

    rng = np.random.default_rng([i, 2014])
    source = _sources()[i % len(PHOTOS)]
    w, h = source.size
    cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image = source.crop((x, y, x + cw, y + ch)).resize(SIZE, Image.Resampling.BICUBIC)
    return ImageOps.mirror(image) if rng.random() < 0.5 else image


def _make_block(folder: str, indices: list[int]) -> int:
    for i in indices:
        target = Path(folder) / photo_name(i)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        make_photo(i).save(tmp, format="JPEG", quality=90)
        os.replace(tmp, target)  # a complete JPEG or none: an interrupted run resumes safely
    return len(indices)
