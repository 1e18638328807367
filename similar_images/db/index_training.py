"""Training a Faiss index on a bounded sample: how many vectors, which settings, what to free.

Every k-means an index trains (the IVF lists, each PQ codebook of ``2**nbits``
centroids) gets a bounded random sample, :data:`TRAIN_POINTS_PER_CENTROID` vectors per
centroid: it trains as well as all the vectors do, in a fraction of the time
(``benchmarks/build_index.py --train-table``). Measurements: ``benchmarks/README.md``.
"""

from __future__ import annotations

import numpy as np

from similar_images.db.ranking import normalize

# Per centroid of each k-means (IVF lists, PQ 2**nbits): trains as well as all the vectors
# do, in a fraction of the time (benchmarks/build_index.py --train-table).
TRAIN_POINTS_PER_CENTROID = 64
DEFAULT_TRAIN_SIZE = 50_000  # an upper bound on the sample (--train-size)

# OPQ's rotation (opq-ivfpq), trained on a bounded share of the sample: Faiss' defaults (50
# rounds, 40 PQ iterations first, 65,536 points) added 16 s to a 40,504 x 1280 build; these
# bounds about 1 s, for the same re-ranking pool on EfficientNet-Lite0 features
# (benchmarks/README.md, "Search indexes").
OPQ_ROUNDS = 10
OPQ_FIRST_PQ_ITERATIONS = 10
OPQ_TRAIN_POINTS = 39 * 256  # Faiss' minimum for the 256 centroids of each sub-quantizer


def train_sample(vectors, size: int, *, seed: int = 0) -> np.ndarray:
    """Up to ``size`` rows of ``vectors`` (sorted random rows), normalised."""
    n = len(vectors)
    if n <= size:
        return normalize(vectors)
    rows = np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
    return normalize(vectors[rows])


def no_polysemous_training(index) -> None:
    """Turn off an IVF-PQ index's polysemous training (nested in a PCA too).

    Faiss' factory turns it on; it reorders each PQ codebook for Hamming filtering
    that these searches never use (the original's ``IndexIVFPQ`` left it off). Same
    codebooks, same results; training took 55 times longer with it.
    """
    ivf = ivf_of(index)
    if hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False


def ivf_of(index):
    """The IVF part of ``index`` (downcast), or None."""
    import faiss
    try:
        return faiss.downcast_index(faiss.extract_index_ivf(index))
    except RuntimeError:  # not an IVF index
        return None


def largest_kmeans(index) -> int:
    """Centroids of the largest k-means ``index`` trains: its IVF lists or PQ ``2**nbits`` (0: none)."""
    ivf = ivf_of(index)
    if ivf is None:
        return 0
    pq = getattr(ivf, "pq", None)
    return max(int(ivf.nlist), int(pq.ksub) if pq is not None else 0)


def training_size(index, n: int, cap: int = DEFAULT_TRAIN_SIZE,
                  points_per_centroid: int = TRAIN_POINTS_PER_CENTROID) -> int:
    """How many of ``n`` vectors train ``index``: ``points_per_centroid`` per centroid of its
    largest k-means, at most ``cap`` and ``n`` (IVF100,PQ16x8: 64 x 256 = 16,384)."""
    centroids = largest_kmeans(index)
    want = points_per_centroid * centroids if centroids else cap
    return max(1, min(n, cap, want))


def train_index(index, vectors, *, train_size: int = DEFAULT_TRAIN_SIZE, seed: int = 0,
                points_per_centroid: int = TRAIN_POINTS_PER_CENTROID) -> int:
    """Train ``index`` on a bounded random sample of ``vectors`` (:func:`training_size`, at
    most ``train_size``); return the sample size."""
    if index.is_trained:
        return 0
    size = training_size(index, len(vectors), train_size, points_per_centroid)
    sample = train_sample(vectors, size, seed=seed)  # (t, d) normalised
    if (ivf := ivf_of(index)) is not None:  # the lists' k-means: 6,400 points for 100 (Faiss subsamples, seeded)
        ivf.cp.max_points_per_centroid = points_per_centroid
    bound_opq_training(index)
    index.train(sample)
    return len(sample)


def bound_opq_training(index) -> None:
    """Cap the OPQ rotation's training (rounds, first PQ iterations, points) of ``index``, if it has one."""
    import faiss

    for transform in _transforms_of(index):
        if isinstance(transform, faiss.OPQMatrix):
            transform.niter = OPQ_ROUNDS
            transform.niter_pq_0 = OPQ_FIRST_PQ_ITERATIONS
            transform.max_train_points = OPQ_TRAIN_POINTS


def _transforms_of(index) -> list:
    """The vector transforms (downcast) an ``IndexPreTransform`` applies first; [] for other indexes."""
    import faiss

    if not isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index)
    if not isinstance(index, faiss.IndexPreTransform):
        return []
    return [faiss.downcast_VectorTransform(index.chain.at(i)) for i in range(index.chain.size())]


def drop_training_state(index) -> None:
    """Free what only training needs: a PCA keeps its full ``d x d`` covariance
    eigenvectors (64 MB at 4096-d) though applying it needs only the first rows."""
    import faiss

    for transform in _transforms_of(index):
        if isinstance(transform, faiss.PCAMatrix):
            transform.PCAMat.resize(0)
