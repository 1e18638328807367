"""Synthetic feature vectors that look like CNN features, for tests and benchmarks.

Real VGG16 fc2 outputs are non-negative (after ReLU), sparse-ish (most entries are 0),
clustered (images of the same kind of scene sit together, in a hierarchy: topic, then
near-identical shots), overlapping (a photo often shows two kinds of thing), share a
common component (any two photos have a cosine of a few tenths), and have a low
intrinsic dimension: a few hundred principal components hold most of the variance.
:func:`clustered_vectors` reproduces those traits from a fixed seed, so an index can be
measured against brute force without downloading a dataset: the clusters live in a
``latent``-dimensional space mapped to ``dim`` dimensions by a random linear layer, plus
full-rank noise, then a bias and a ReLU.
"""

from __future__ import annotations

import numpy as np


def clustered_vectors(
    n: int,
    dim: int = 4096,
    *,
    latent: int = 64,
    n_topics: int = 80,
    per_cluster: int = 20,
    noise: float = 0.4,
    seed: int = 0,
    chunk: int = 4096,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Non-negative, sparse-ish, hierarchically clustered vectors of low intrinsic dimension.

    Args:
        n: number of vectors.
        dim: dimension.
        latent: dimension of the space the clusters live in (the intrinsic dimension).
        n_topics: broad groups; each holds several tight clusters.
        per_cluster: average number of vectors per tight cluster.
        noise: scale of the full-rank noise added in the ``dim``-dimensional space
            (larger: harder for compressed indexes).
        seed: random seed; the same arguments always give the same array.
        chunk: rows generated at a time (bounds the float32 temporaries).
        out: an ``(n, dim)`` float32 or float16 array to fill (a memory map, for collections
            larger than memory; anything with ``shape``, ``dtype`` and slice assignment);
            default a new float32 one. The values are the same either way (float16: rounded).

    Returns:
        ``(n, dim)`` float32, raw (not normalised), about 60 % zeros. With the defaults
        and 4096 dimensions, a random pair has a cosine of about 0.27, an image's 10th
        nearest neighbour about 0.69, and 256 principal components hold about 80 % of
        the variance.
    """
    if n < 1 or dim < 1:
        raise ValueError(f"n and dim must be positive, got n={n}, dim={dim}")
    rng = np.random.default_rng(seed)
    n_clusters = max(1, n // per_cluster)
    topics = 1.5 * rng.standard_normal((n_topics, latent), dtype=np.float32)  # (t, L)
    centres = topics[rng.integers(0, n_topics, n_clusters)]
    centres += rng.standard_normal((n_clusters, latent), dtype=np.float32)  # (c, L)
    layer = rng.standard_normal((latent, dim), dtype=np.float32) / np.sqrt(latent)  # (L, dim)
    common = rng.random(dim, dtype=np.float32)  # (dim,) shared by every image
    labels = rng.integers(0, n_clusters, n)
    # Many photos mix two kinds of scene (a dog on a sofa): clusters overlap, so the
    # nearest neighbours of an image often lie in other clusters, as in real features.
    others = rng.integers(0, n_clusters, n)
    mix = rng.uniform(0.0, 0.5, n).astype(np.float32)
    scale = rng.uniform(0.6, 1.4, n).astype(np.float32)  # feature magnitude varies by image
    if out is None:
        out = np.empty((n, dim), dtype=np.float32)
    elif tuple(out.shape) != (n, dim) or out.dtype not in (np.float32, np.float16):
        raise ValueError(f"out must be ({n}, {dim}) float32 or float16, got {out.shape} {out.dtype}")
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        w = mix[start:stop, None]
        z = (1 - w) * centres[labels[start:stop]] + w * centres[others[start:stop]]  # (c, L)
        z += 0.7 * rng.standard_normal((stop - start, latent), dtype=np.float32)
        x = z @ layer + common  # (c, dim)
        x += noise * rng.standard_normal((stop - start, dim), dtype=np.float32)
        x -= 0.9  # bias, then ReLU: sparse and non-negative
        np.maximum(x, 0.0, out=x)
        x *= scale[start:stop, None]
        out[start:stop] = x
    return out
