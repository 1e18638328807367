"""Image collections for the extraction tests, generated in tmp_path (nothing committed).

``make_collection`` writes real photos (skimage), the awkward-but-valid files that must
load (CMYK JPEG, 16-bit PNG, palette PNG with transparency, EXIF-rotated JPEG) and the
broken ones that must be skipped, plus a file list naming them all (and a missing one).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry")

# name -> expected skip reason; "huge.png" only when Image.MAX_IMAGE_PIXELS is lowered
BAD = {
    "empty.jpg": "not an image",
    "text.jpg": "not an image",
    "truncated.jpg": "corrupt",
    "missing.jpg": "not found",
    "huge.png": "too large",
}
AWKWARD = ("cmyk.jpg", "grey16.png", "palette.png", "rotated.jpg")
HUGE_SIDE = 300  # huge.png is 300x300; every other test image is under 200x200
SMALL_CAP = 200 * 200  # Image.MAX_IMAGE_PIXELS for tests that make huge.png "too large"


def photo(name: str, size=(64, 48)) -> Image.Image:
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize(size)


def halves(width: int, height: int) -> Image.Image:
    """Red left half, blue right half."""
    image = Image.new("RGB", (width, height), (0, 0, 255))
    image.paste(Image.new("RGB", (width // 2, height), (255, 0, 0)), (0, 0))
    return image


def noise(seed: int, size=(32, 24)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def write_awkward(folder: Path) -> None:
    Image.new("RGB", (40, 40), (200, 100, 50)).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    ramp = np.linspace(0, 65535, 40 * 40).reshape(40, 40).astype(np.uint16)
    Image.fromarray(ramp).save(folder / "grey16.png")
    palette = Image.new("P", (40, 40), 0)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.paste(1, (20, 0, 40, 40))  # right half green, left half transparent
    palette.save(folder / "palette.png", transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: red on top, blue below
    halves(60, 30).save(folder / "rotated.jpg", quality=95, exif=exif)


def write_bad(folder: Path) -> None:
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not a picture\n")
    buffer = io.BytesIO()
    noise(99, (120, 120)).save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    Image.new("RGB", (HUGE_SIDE, HUGE_SIDE), (9, 9, 9)).save(folder / "huge.png")


def make_collection(root: Path, *, noise_images: int = 0, bad: bool = True) -> tuple[Path, Path, list[str]]:
    """Write images and a file list under ``root``; return (file list, image folder, names)."""
    folder = root / "images"
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    names = []
    for name in PHOTOS:
        photo(name).save(folder / f"{name}.jpg", quality=90)
        names.append(f"{name}.jpg")
    for i in range(noise_images):
        noise(i).save(folder / "sub" / f"noise{i:03d}.jpg", quality=90)
        names.append(f"sub/noise{i:03d}.jpg")
    write_awkward(folder)
    names[2:2] = AWKWARD  # mixed in, not at the end
    if bad:
        write_bad(folder)
        names[1:1] = ["empty.jpg", "text.jpg"]
        names[6:6] = ["truncated.jpg", "missing.jpg", "huge.png"]
    file_list = root / "files.txt"
    file_list.write_text("\n".join(names) + "\n")
    return file_list, folder, names


class PixelExtractor:
    """A real, tiny feature model: the 4x4 RGB thumbnail's pixels (48-d).

    Fast, and its features show exactly which image (and orientation) a row holds.
    """

    name = "pixels"
    input_size = (4, 4)
    dim = 48

    def __init__(self):
        self.calls = 0

    def embed(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        return batch.reshape(len(batch), -1).astype(np.float32)  # (n, 48)

    def describe(self) -> dict:
        return {"name": self.name, "weights": "none", "dim": self.dim, "input_size": [4, 4],
                "runtime": "numpy", "precision": "fp32"}
