"""A small real database for the notebook tests (widgets, nbclient, browser).

Built once per test session with the project's own code: offline sample photos plus
cropped copies, EfficientNet-Lite0 features (pretrained, offline) extracted by
``extract.run_extraction``, and a Faiss index written by ``database.build_index_files``.
"""

from __future__ import annotations

import json
from pathlib import Path

# 12 photos + a cropped copy of each: 24 images, enough for k=8 with room to spare.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "hubble", "camera",
          "coins", "brick", "china", "flower", "grace_hopper")
EDITS = ("crop",)
MODEL = "efficientnet-lite0"


def database_files(tmp_path_factory) -> dict[str, Path]:
    """Paths of the session's test database, building it on first use.

    Returns:
        ``{"vectors", "index", "image_dir", "folder"}``.
    """
    folder = tmp_path_factory.getbasetemp() / "widget_db"
    done = folder / "paths.json"
    if not done.exists():
        paths = _build(folder)
        done.write_text(json.dumps({k: str(v) for k, v in paths.items()}))
    return {k: Path(v) for k, v in json.loads(done.read_text()).items()}


def _build(folder: Path) -> dict[str, Path]:
    from similar_images.db.build import build_index_files
    from similar_images.demo import sample_photos
    from similar_images.extract import run_extraction
    from similar_images.features import get_extractor

    image_dir = folder / "images"
    names = sample_photos.write_collection(image_dir, photos=PHOTOS, edits=EDITS,
                                           show_progress=False)
    file_list = folder / "files.txt"
    file_list.write_text("\n".join(names) + "\n")
    vectors = folder / "files.txt.saved_predictions.npy"
    extractor = get_extractor(MODEL)
    run_extraction(file_list, image_dir, vectors, extractor, batch_size=8, workers=1,
                   show_progress=False)
    index = folder / "files.faiss.index"
    build_index_files(vectors, index, index_type="flat", show_progress=False)
    return {"vectors": vectors, "index": index, "image_dir": image_dir, "folder": folder}
