"""A small fake collection for the duplicate finder's fast tests: real image files made
with Pillow, vectors made up so the groups are known, and one byte-identical copy whose
vector is unlike its twin's (only the content hash can group it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

DIM = 32
# group name -> sizes (w, h) of its members; the first is the largest
GROUPS = {"beach": [(400, 300), (200, 150), (120, 90)], "dog": [(256, 256), (256, 256)],
          "tree": [(300, 200), (150, 100), (90, 60), (60, 40)]}
SINGLES = 12


def make_collection(folder: Path, *, index_type: str | None = "flat", noise: float = 0.05, seed: int = 0) -> dict:
    """Write the images and a database; returns ``{"vectors", "index", "names", "truth", "copy"}``."""
    from similar_images.db.build import build_index_files
    from similar_images.db.vectors import save_vectors

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names, vectors, truth = [], [], []
    for label, sizes in GROUPS.items():
        centre = rng.standard_normal(DIM)
        for i, size in enumerate(sizes):
            # the dog pair: same pixels size, so the keeper is decided by the file size or the name
            name = f"{label}_{i}.jpg" if label != "dog" else ["dog.jpg", "dog_longer_name.jpg"][i]
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            Image.new("RGB", size, colour).save(folder / name, quality=90)
            names.append(name)
            vectors.append(centre + noise * rng.standard_normal(DIM))
            truth.append(label)
    for i in range(SINGLES):
        name = f"single_{i:02d}.jpg"
        Image.new("RGB", (64 + i, 48), tuple(int(c) for c in rng.integers(0, 255, 3))).save(folder / name)
        names.append(name)
        vectors.append(rng.standard_normal(DIM))
        truth.append(name)
    # a byte-identical copy of single_00.jpg with a made-up, unrelated vector
    shutil.copyfile(folder / "single_00.jpg", folder / "copy_of_single.jpg")
    names.append("copy_of_single.jpg")
    vectors.append(rng.standard_normal(DIM))
    truth.append("single_00.jpg")
    path = folder / "db.txt.saved_predictions.npy"
    save_vectors(path, np.asarray(vectors, np.float32), {"model": {"name": "synthetic", "dim": DIM},
                                                          "names": names, "image_dir": str(folder)})
    index = None
    if index_type:
        index = folder / "db.faiss.index"
        build_index_files(path, index, index_type=index_type, show_progress=False)
    return {"vectors": path, "index": index, "names": names, "truth": truth, "folder": folder}


def open_collection(files: dict):
    from similar_images.search import SimilarImages

    return SimilarImages.open(files["vectors"], index=files["index"])
