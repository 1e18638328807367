"""Databases for the index/search tests, generated in tmp_path (nothing committed).

``TinyExtractor`` is a real (if crude) feature model: a 4 x 4 grid of mean colours,
48 non-negative numbers, so image queries run the same code paths as VGG16 without
TensorFlow. Tests register it as model ``"tiny"`` in ``features.MODELS`` (monkeypatch),
so a database whose manifest names it builds it lazily like any other model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from similar_images.db.vectors import save_vectors
from similar_images.evaluation.synthetic import clustered_vectors
from similar_images.images import load_for_model

TINY_DIM = 48


class TinyExtractor:
    name = "tiny"
    input_size = (16, 16)
    dim = TINY_DIM

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.calls = 0  # how many times embed() ran: one model call per search

    def embed(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        batch = np.asarray(batch, dtype=np.float32)  # (n, 16, 16, 3)
        cells = batch.reshape(len(batch), 4, 4, 4, 4, 3).mean(axis=(2, 4))  # (n, 4, 4, 3)
        return cells.reshape(len(batch), TINY_DIM) / 255.0 + 0.01  # (n, 48) float32

    def describe(self) -> dict:
        return {"name": "tiny", "weights": f"none(seed={self.seed})", "dim": TINY_DIM,
                "input_size": [16, 16], "runtime": "native", "precision": "fp32"}


def create_tiny(weights: str = "none", seed: int = 0) -> TinyExtractor:
    if weights != "none":
        raise ValueError("tiny has no trained weights")
    return TinyExtractor(seed)


def register_tiny(monkeypatch) -> None:
    from similar_images import features

    monkeypatch.setitem(features.MODELS, "tiny", "_index_data:create_tiny")


def pattern_image(i: int, size=(40, 30)) -> Image.Image:
    """A distinct picture per ``i``: a 4 x 4 grid of colours from a seeded generator."""
    rng = np.random.default_rng(1000 + i)
    cells = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(cells).resize(size, Image.Resampling.NEAREST)


def write_images(folder: Path, ids, prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in ids:
        path = folder / f"{prefix}{i:03d}.png"
        pattern_image(i).save(path)
        paths.append(path)
    return paths


def image_db(tmp_path: Path, n: int = 12) -> tuple[Path, Path]:
    """A database of ``n`` pattern images embedded with the tiny model; (vectors path, image dir)."""
    image_dir = tmp_path / "images"
    paths = write_images(image_dir, range(n))
    extractor = TinyExtractor()
    batch = np.stack([load_for_model(p, extractor.input_size) for p in paths])  # (n, 16, 16, 3)
    vectors = extractor.embed(batch)
    out = tmp_path / "db.npy"
    save_vectors(out, vectors, {"model": extractor.describe(), "names": [p.name for p in paths],
                                "image_dir": str(image_dir)})
    return out, image_dir


def vector_db(tmp_path: Path, n: int = 2000, dim: int = 64, *, name: str = "db.npy",
              model: dict | None = None, seed: int = 0) -> tuple[Path, np.ndarray]:
    """A database of synthetic clustered vectors (no images); (vectors path, vectors)."""
    vectors = clustered_vectors(n, dim, seed=seed)
    out = tmp_path / name
    model = model or {"name": "synthetic", "weights": "none(seed=0)", "dim": dim}
    save_vectors(out, vectors, {"model": model, "names": [f"v{i:05d}.jpg" for i in range(n)],
                                "image_dir": str(tmp_path / "images")})
    return out, vectors


def indexed_database(folder: Path, n: int, dim: int, *, eval_queries: int = 10,
                     **build_options) -> tuple[Path, np.ndarray]:
    """``vector_db`` with an index beside it (``db.npy``, ``db.faiss.index``) in ``folder``:
    (the folder, the vectors). ``build_options`` go to ``build_index_files`` (index_type, nlist...)."""
    from similar_images.db.build import build_index_files

    vectors_path, vectors = vector_db(folder, n, dim)
    build_index_files(vectors_path, folder / "db.faiss.index", show_progress=False, eval_queries=eval_queries,
                      **build_options)
    return folder, vectors


def flat_database(folder: Path, n: int, dim: int, *, eval_queries: int = 10) -> Path:
    """``indexed_database`` with a flat index: the folder."""
    return indexed_database(folder, n, dim, eval_queries=eval_queries, index_type="flat")[0]


def tiny_flat_database(tmp_path, monkeypatch):
    """12 pattern images embedded with the tiny model (registered) and a flat index:
    ``(vectors, index, image_dir)``."""
    from similar_images.db.build import build_index_files

    register_tiny(monkeypatch)
    vectors, image_dir = image_db(tmp_path, 12)
    index = tmp_path / "db.faiss.index"
    build_index_files(vectors, index, index_type="flat", show_progress=False)
    return vectors, index, image_dir


def free_port() -> int:
    """A TCP port free on 127.0.0.1 (the only address tests use)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_database(source: Path, target: Path, names=("db.npy", "db.faiss.index")) -> list[Path]:
    """Copy database files and their manifests from ``source`` into ``target``: the copied paths."""
    import shutil

    from similar_images.fileio.files import manifest_path, refine_codes_path

    for name in names:
        for path in (source / name, manifest_path(source / name), source / f"{name}.catalog.sqlite",
                     refine_codes_path(source / name)):
            if path.exists() or not path.name.endswith((".sqlite", ".refine.npy")):  # an index has no catalog
                shutil.copy(path, target / path.name)
    return [target / name for name in names]


def write_format_1(vectors_path, vectors, names):
    """A database as the previous version wrote it (format 1: the names in the manifest)."""
    import json

    from similar_images.fileio.files import manifest_path, sha256_file, sha256_lines

    np.save(vectors_path, vectors)
    dim = int(vectors.shape[1])
    manifest = {"format": 1, "kind": "vectors", "model": {"name": "synthetic", "weights": "none(seed=0)", "dim": dim},
                "names": names, "image_dir": None, "count": len(names), "dimension": dim,
                "vectors_sha256": sha256_file(vectors_path), "names_sha256": sha256_lines(names)}
    manifest_path(vectors_path).write_text(json.dumps(manifest))
