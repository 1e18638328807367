"""Ranking metrics, as pure functions on arrays.

Two shapes of input appear here:

* a **relevance matrix** ``(n_queries, k)`` bool: ``relevance[q, i]`` says whether the
  result ranked ``i + 1`` for query ``q`` is relevant (semantic quality);
* **ranked ids** ``(n_queries, k)`` int, ``-1`` where a search returned fewer than ``k``
  results, compared against exact ids or a target id (index fidelity, copy detection).

Every function returns per-query values or their mean as plain floats, so reports can
print them, save them as JSON and average them across queries.
"""

from __future__ import annotations

import numpy as np


def _as_relevance(relevance, k: int) -> np.ndarray:
    rel = np.asarray(relevance, dtype=bool)
    if rel.ndim != 2:
        raise ValueError(f"relevance must be a 2-d (queries, ranks) array, got shape {rel.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if rel.shape[1] < k:
        # A search that returned fewer than k results: the missing ones are not relevant.
        rel = np.pad(rel, ((0, 0), (0, k - rel.shape[1])))
    return rel[:, :k]


def precision_at_k(relevance, k: int) -> np.ndarray:
    """Fraction of the first ``k`` results that are relevant, per query.

    Args:
        relevance: ``(n, >=k)`` bool, ranked best first.
        k: cut-off.

    Returns:
        ``(n,)`` float64.
    """
    return _as_relevance(relevance, k).mean(axis=1)


def average_precision_at_k(relevance, k: int, n_relevant=None) -> np.ndarray:
    """AP@k per query: the mean of precision@i over the ranks i <= k that hold a hit.

    The sum of those precisions is divided by ``min(k, n_relevant)``, the most hits a
    perfect ranking could place in the first ``k``, so a perfect ranking scores 1 and a
    ranking that misses relevant images is penalised. Without ``n_relevant`` the
    divisor is the number of hits found (AP over the retrieved list only). A query with
    no relevant image at all scores 0.

    Args:
        relevance: ``(n, >=k)`` bool, ranked best first.
        k: cut-off.
        n_relevant: ``(n,)`` number of relevant items in the whole collection per query
            (excluding the query itself), or None.

    Returns:
        ``(n,)`` float64.
    """
    rel = _as_relevance(relevance, k).astype(np.float64)  # (n, k)
    ranks = np.arange(1, k + 1)  # (k,)
    precision_at_i = np.cumsum(rel, axis=1) / ranks  # (n, k)
    summed = (precision_at_i * rel).sum(axis=1)  # (n,)
    if n_relevant is None:
        divisor = rel.sum(axis=1)
    else:
        n_relevant = np.asarray(n_relevant, dtype=np.float64).reshape(-1)
        if n_relevant.shape[0] != rel.shape[0]:
            raise ValueError(f"n_relevant has {n_relevant.shape[0]} values for {rel.shape[0]} queries")
        divisor = np.minimum(n_relevant, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(divisor > 0, summed / np.maximum(divisor, 1), 0.0)
    return ap


def mean_average_precision_at_k(relevance, k: int, n_relevant=None) -> float:
    """mAP@k: :func:`average_precision_at_k` averaged over queries."""
    return float(average_precision_at_k(relevance, k, n_relevant).mean())


def ranks_of(targets, ranked_ids) -> np.ndarray:
    """1-based rank of each query's target in its ranking; 0 where it is absent.

    Args:
        targets: ``(n,)`` the id each query should find.
        ranked_ids: ``(n, k)`` ids ranked best first.

    Returns:
        ``(n,)`` int64.
    """
    targets = np.asarray(targets).reshape(-1, 1)  # (n, 1)
    ranked = np.asarray(ranked_ids)
    if ranked.ndim != 2 or ranked.shape[0] != targets.shape[0]:
        raise ValueError(f"ranked_ids {ranked.shape} must be (queries={targets.shape[0]}, ranks)")
    hit = ranked == targets  # (n, k)
    first = hit.argmax(axis=1) + 1
    return np.where(hit.any(axis=1), first, 0).astype(np.int64)


def recall_at_k_from_ranks(ranks, k: int) -> float:
    """Share of queries whose target was found within the first ``k`` (ranks from :func:`ranks_of`)."""
    ranks = np.asarray(ranks)
    return float(((ranks >= 1) & (ranks <= k)).mean()) if ranks.size else 0.0


def mean_rank(ranks, missing_rank: int) -> float:
    """Mean 1-based rank, counting a target that was not found as ``missing_rank``."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if not ranks.size:
        return 0.0
    return float(np.where(ranks >= 1, ranks, missing_rank).mean())


def random_precision(n_relevant, n_candidates: int) -> np.ndarray:
    """Expected precision@k (any k) of a random ranking: ``n_relevant / n_candidates`` per query."""
    if n_candidates < 1:
        raise ValueError("a random ranking needs at least one candidate")
    return np.asarray(n_relevant, dtype=np.float64) / n_candidates


def random_average_precision(n_relevant, n_candidates: int, k: int) -> np.ndarray:
    """Expected AP@k (as in :func:`average_precision_at_k` with ``n_relevant``) of a random ranking.

    Exact, not simulated: with ``R`` relevant items among ``N`` candidates, the result at
    rank ``i`` is relevant with probability ``R/N`` and two ranks both are with
    probability ``R(R-1)/(N(N-1))``, so

    ``E[AP@k] = 1/min(k, R) * sum_{i<=min(k,N)} (R/N + (i-1) R(R-1)/(N(N-1))) / i``.

    Returns:
        ``(n,)`` float64; 0 for a query with no relevant item.
    """
    if n_candidates < 1:
        raise ValueError("a random ranking needs at least one candidate")
    r = np.asarray(n_relevant, dtype=np.float64).reshape(-1, 1)  # (n, 1)
    n = float(n_candidates)
    i = np.arange(1, min(k, n_candidates) + 1, dtype=np.float64)  # (k,)
    pair = r * (r - 1) / (n * (n - 1)) if n_candidates > 1 else np.zeros_like(r)
    expected_sum = ((r / n + (i - 1) * pair) / i).sum(axis=1)  # (n,)
    divisor = np.minimum(r[:, 0], k)
    return np.where(divisor > 0, expected_sum / np.maximum(divisor, 1), 0.0)
