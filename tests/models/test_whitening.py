"""PCA-whitening fitted on a database: what it does to the vectors, and its file."""

from __future__ import annotations

import numpy as np
import pytest

from similar_images.errors import ModelError
from similar_images.models import whitening


def _vectors(n=200, d=16, seed=0):
    """Vectors sharing one strong direction (every row has it), plus weaker independent ones."""
    rng = np.random.default_rng(seed)
    shared = np.zeros(d)
    shared[0] = 10.0
    return (shared + rng.normal(size=(n, d)) * np.linspace(3, 0.5, d)).astype(np.float32)


def test_whitened_vectors_have_equalised_principal_variances():
    x = _vectors()
    mean, projection = whitening.fit(x, shrinkage=0.0)
    y = whitening.apply(x, mean, projection).astype(np.float64)
    variances = np.linalg.eigvalsh(np.cov(y.T, bias=True))
    assert np.allclose(variances[variances > 1e-6], 1.0, atol=1e-3)  # unit variance on every kept axis
    assert abs(y.mean(axis=0)).max() < 1e-4  # centred


def test_shrinkage_keeps_weak_axes_from_growing_to_the_strong_ones_size():
    x = _vectors()
    full = np.linalg.eigvalsh(np.cov(whitening.apply(x, *whitening.fit(x, shrinkage=0.0)).T))
    shrunk = np.linalg.eigvalsh(np.cov(whitening.apply(x, *whitening.fit(x, shrinkage=1.0)).T))
    assert full.max() / full.min() < 1.01 and shrunk.max() / shrunk.min() > 1.5


def test_fewer_vectors_than_dimensions_drop_the_directions_without_variance():
    x = _vectors(n=5, d=16)
    mean, projection = whitening.fit(x)
    assert projection.shape == (16, 16) and np.linalg.matrix_rank(projection) == 4  # 5 centred rows: rank 4
    outside = np.linalg.svd(x / np.linalg.norm(x, axis=1, keepdims=True) - mean)[2][-1]  # a null direction
    assert abs(outside @ projection).max() < 1e-5


def test_the_whitening_file_round_trips_and_is_checked(tmp_path):
    x = _vectors()
    mean, projection = whitening.fit(x)
    record = whitening.save(tmp_path / "v.npy", mean, projection, fitted_on=len(x))
    assert record["file"].startswith("v.npy.whiten-") and record["fitted_on"] == 200
    loaded = whitening.load(tmp_path, record)
    assert np.array_equal(loaded[0], mean) and np.array_equal(loaded[1], projection)
    with pytest.raises(ModelError, match="checksum"):
        whitening.load(tmp_path, {**record, "sha256": "0" * 64})
    (tmp_path / record["file"]).unlink()
    with pytest.raises(ModelError, match="missing"):
        whitening.load(tmp_path, record)


def test_fit_refuses_a_single_vector():
    with pytest.raises(ValueError, match="at least 2"):
        whitening.fit(np.ones((1, 4), np.float32))


def test_the_wrapper_whitens_embed_and_hides_streaming():
    class Model:
        name, input_size, dim = "m", (2, 2), 16

        def embed(self, batch):
            return _vectors(n=len(batch), seed=1)

        def stream(self):  # a streaming model's vectors would skip the whitening
            raise AssertionError

        def describe(self):
            return {"name": "m"}

    mean, projection = whitening.fit(_vectors())
    wrapped = whitening.WhitenedExtractor(Model(), mean, projection, {"file": "f"})
    batch = np.zeros((3, 2, 2, 3), np.uint8)
    assert np.allclose(wrapped.embed(batch), whitening.apply(_vectors(n=3, seed=1), mean, projection))
    assert wrapped.dim == 16 and not hasattr(wrapped, "stream")
    assert wrapped.describe() == {"name": "m", "whitening": {"file": "f"}}
