"""Synthetic feature vectors that look like CNN features, for tests and benchmarks.

Real VGG16 fc2 outputs are non-negative (after ReLU), sparse-ish (most entries are 0),
clustered (images of the same kind of scene sit together, in a hierarchy: topic, then
near-identical shots) and share a common component (any two photos have a cosine of a
few tenths). :func:`clustered_vectors` reproduces those traits from a fixed seed, so an
index can be measured against brute force without downloading a dataset.
"""

from __future__ import annotations

import numpy as np


def clustered_vectors(
    n: int,
    dim: int = 4096,
    *,
    n_topics: int = 80,
    per_cluster: int = 20,
    seed: int = 0,
    chunk: int = 4096,
) -> np.ndarray:
    """Non-negative, sparse-ish, hierarchically clustered vectors.

    Args:
        n: number of vectors.
        dim: dimension.
        n_topics: broad groups; each holds several tight clusters.
        per_cluster: average number of vectors per tight cluster.
        seed: random seed; the same arguments always give the same array.
        chunk: rows generated at a time (bounds the float32 temporaries).

    Returns:
        ``(n, dim)`` float32, raw (not normalised), about 60-70 % zeros.
    """
    if n < 1 or dim < 1:
        raise ValueError(f"n and dim must be positive, got n={n}, dim={dim}")
    rng = np.random.default_rng(seed)
    n_clusters = max(1, n // per_cluster)
    common = rng.random(dim, dtype=np.float32)  # (dim,) shared by every image
    topics = rng.standard_normal((n_topics, dim), dtype=np.float32)  # (t, dim)
    topic_of = rng.integers(0, n_topics, n_clusters)
    centres = topics[topic_of] + 0.8 * rng.standard_normal((n_clusters, dim), dtype=np.float32)
    labels = rng.integers(0, n_clusters, n)
    # Most photos mix two kinds of scene (a dog on a sofa): clusters overlap, so the
    # nearest neighbours of an image often lie in other clusters, as in real features.
    others = rng.integers(0, n_clusters, n)
    mix = rng.uniform(0.0, 0.5, n).astype(np.float32)
    scale = rng.uniform(0.6, 1.4, n).astype(np.float32)  # feature magnitude varies by image
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        w = mix[start:stop, None]
        x = common + (1 - w) * centres[labels[start:stop]] + w * centres[others[start:stop]]  # (c, dim)
        x += 0.9 * rng.standard_normal((stop - start, dim), dtype=np.float32)
        x -= 0.8  # threshold, then ReLU: sparse and non-negative
        np.maximum(x, 0.0, out=x)
        x *= scale[start:stop, None]
        out[start:stop] = x
    return out
