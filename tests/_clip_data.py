"""A small CLIP database for the CLIP tests, built once per session by the CLI itself.

``clip-vit-b-32`` with random weights (``--weights none``, seeded: no download), 8 offline
sample photos (scikit-image's), and a flat index beside the vectors.
"""

from __future__ import annotations

import json
from pathlib import Path

MODEL = "clip-vit-b-32"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "camera", "coins", "brick")


def clip_extractor(seed: int = 0):
    """The random-weights CLIP extractor (open_clip's model is loaded once per process)."""
    from similar_images.features import get_extractor

    return get_extractor(MODEL, weights="none", seed=seed, device="cpu")


def clip_database(tmp_path_factory) -> dict[str, Path]:
    """``{"vectors", "index", "image_dir", "folder"}`` of the session's CLIP database."""
    folder = tmp_path_factory.getbasetemp() / "clip_db"
    done = folder / "paths.json"
    if not done.exists():
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps({k: str(v) for k, v in _build(folder).items()}))
    return {k: Path(v) for k, v in json.loads(done.read_text()).items()}


def _build(folder: Path) -> dict[str, Path]:
    from click.testing import CliRunner

    from similar_images.cli import main
    from similar_images.db.build import build_index_files
    from similar_images.demo import sample_photos

    image_dir = folder / "images"
    names = sample_photos.write_collection(image_dir, photos=PHOTOS, edits=(), show_progress=False)
    file_list = folder / "files.txt"
    file_list.write_text("\n".join(names) + "\n")
    vectors = folder / "clip.npy"
    result = CliRunner().invoke(main, ["extract", "-l", str(file_list), "-d", str(image_dir), "-o", str(vectors),
                                       "--model", MODEL, "--weights", "none", "--device", "cpu", "-b", "3",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    index = folder / "clip.faiss.index"
    build_index_files(vectors, index, index_type="flat", show_progress=False)
    return {"vectors": vectors, "index": index, "image_dir": image_dir, "folder": folder}
