"""PCA-whitening fitted on a database's own vectors, stored beside them.

As in Jégou and Chum (ECCV 2012) and the R-MAC/GeM papers, the L2-normalised vectors are
centred and projected on their principal axes, each axis divided by the square root of
its variance, so directions that every photo of the collection shares (the "bursty" ones)
stop dominating the cosine. Fitted on the collection itself (no training data), on the
pooled vectors a database holds.

A collection is usually smaller than the vector (a few hundred photos, 1280 dimensions):
the covariance then has rank below ``n`` and its other directions carry no variance.
Those directions are dropped (their weight is 0, so the vector keeps its length ``d``
and every index works unchanged), and each kept axis is divided by
``sqrt(variance + SHRINKAGE * mean variance)``: the shrinkage keeps the weakest axes
(mostly noise) from being blown up to the strongest's size.

The fitted mean and projection are saved as ``<vectors>.whiten-<sha>.npz`` (named by
their content, so a crash before the vectors are committed leaves only a file the next
run overwrites) and named with their checksum in the model description
(``describe()["whitening"]``); queries and added images load them from there.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

# Measured by benchmarks/descriptors.py (benchmarks/README.md, "Descriptor recipes"): 10 was at
# least as good as 1 for every recipe on copy detection and grouped the duplicates set better
# (EfficientNet-Lite0 avg: group recall 1.000 vs 0.863); 0.1 cut same-scene precision@10 from
# 0.82 to 0.63.
SHRINKAGE = 10.0
RANK_TOL = 1e-6  # axes whose variance is below this share of the largest are dropped


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def fit(vectors: np.ndarray, *, shrinkage: float = SHRINKAGE) -> tuple[np.ndarray, np.ndarray]:
    """Fit the whitening on ``(n, d)`` raw vectors (n >= 2).

    Returns:
        ``(mean, projection)``: ``(d,)`` and ``(d, d)`` float32; :func:`apply` uses them.

    Raises:
        ValueError: fewer than two vectors.
    """
    if len(vectors) < 2:
        raise ValueError(f"whitening needs at least 2 vectors to fit, got {len(vectors)}")
    x = _unit(vectors)  # (n, d)
    mean = x.mean(axis=0)
    _, singular, axes = np.linalg.svd(x - mean, full_matrices=False)  # axes: (min(n, d), d)
    variance = singular ** 2 / len(x)
    kept = variance > RANK_TOL * variance[0] if variance[0] > 0 else np.zeros(len(variance), bool)
    variance, axes = variance[kept], axes[kept]
    scale = 1.0 / np.sqrt(variance + shrinkage * (variance.mean() if len(variance) else 1.0))
    projection = np.zeros((x.shape[1], x.shape[1]))  # (d, d); columns past the kept axes stay 0
    projection[:, :len(axes)] = axes.T * scale
    return mean.astype(np.float32), projection.astype(np.float32)


def apply(vectors: np.ndarray, mean: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """``(n, d)`` raw vectors -> ``(n, d)`` float32 whitened vectors (search normalises them)."""
    if len(vectors) == 0:
        return np.zeros((0, len(mean)), np.float32)
    return ((_unit(vectors) - mean) @ projection).astype(np.float32)


def save(output: str | os.PathLike, mean: np.ndarray, projection: np.ndarray, *, fitted_on: int,
         shrinkage: float = SHRINKAGE) -> dict[str, Any]:
    """Write the whitening beside the vectors file ``output`` (atomically); the record for
    ``describe()["whitening"]``: file name, checksum, shrinkage, vectors fitted on."""
    import hashlib

    from similar_images.fileio.files import atomic_path

    buffer = io.BytesIO()
    np.savez(buffer, mean=mean, projection=projection)
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    output = Path(output)
    target = output.parent / f"{output.name}.whiten-{digest[:12]}.npz"
    with atomic_path(target) as tmp:
        Path(tmp).write_bytes(buffer.getvalue())
    return {"file": target.name, "sha256": digest, "shrinkage": float(shrinkage), "fitted_on": int(fitted_on)}


def load(folder: str | os.PathLike, record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The whitening a model description names, read from the database's ``folder``.

    Raises:
        ModelError: the file is missing or not the one recorded.
    """
    from similar_images.errors import ModelError
    from similar_images.fileio.files import sha256_file

    path = Path(folder) / str(record.get("file", ""))
    if not record.get("file") or not path.is_file():
        raise ModelError(f"the database's whitening file {path} is missing; extract again with --whiten")
    if sha256_file(path) != record.get("sha256"):
        raise ModelError(f"{path} is not the whitening this database was made with (checksum differs)")
    with np.load(path) as data:
        return np.asarray(data["mean"], np.float32), np.asarray(data["projection"], np.float32)


class WhitenedExtractor:
    """A feature extractor whose vectors are whitened with a database's fitted whitening.

    Everything but :meth:`embed` and :meth:`describe` is the wrapped extractor's, except its
    streaming methods: the pipeline then calls :meth:`embed`, which whitens.
    """

    def __init__(self, extractor, mean: np.ndarray, projection: np.ndarray, record: dict[str, Any]):
        self._extractor = extractor
        self._mean, self._projection = mean, projection
        self._record = dict(record)

    def __getattr__(self, name):
        if name in ("prepare", "stream") or name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._extractor, name)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """``(n, h, w, 3)`` uint8 RGB -> ``(n, dim)`` float32 whitened vectors."""
        return apply(self._extractor.embed(batch), self._mean, self._projection)

    def describe(self) -> dict[str, Any]:
        return {**self._extractor.describe(), "whitening": dict(self._record)}
