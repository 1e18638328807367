"""How well an index agrees with exact search, measured on a collection's own vectors.

``build`` uses these to report recall@10 and to choose the re-ranking pool: the
smallest number of candidates (a factor of k) that the index must propose so that
exact re-ranking finds the true nearest neighbours.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .index import search, search_reranked
from .ranking import exact_search

log = logging.getLogger(__name__)

# The build picks the smallest factor (candidates = factor x k) whose recall@10 of a
# collection's own vectors (each one's own id left out) reaches the target.
POOL_FACTORS = (10, 20, 50, 100)
TARGET_RECALL = 0.97


def choose_pool_factor(
    index, vectors, *, k: int = 10, n_queries: int = 200, seed: int = 0,
    target: float = TARGET_RECALL, factors: tuple[int, ...] = POOL_FACTORS,
) -> tuple[int, dict[str, float]]:
    """The smallest re-ranking pool factor whose recall@k reaches ``target``.

    Queries are own vectors, and each query's own id is left out of both rankings,
    so what is measured is how well the *other* neighbours are found: what a new photo
    (not in the collection) gets.

    Returns:
        ``(factor, {str(factor): recall, ...})`` for the factors tried.
    """
    from .metrics import recall_vs_exact

    rows, queries = _own_queries(vectors, n_queries, seed)
    kk = min(k + 1, len(vectors))
    if kk < 2:
        return factors[0], {}
    _, exact = exact_search(vectors, queries, kk)
    exact = _without_self(exact, rows, kk - 1)
    recalls: dict[str, float] = {}
    for factor in factors:
        _, found = search_reranked(index, vectors, queries, kk, pool_factor=factor)
        recalls[str(factor)] = float(recall_vs_exact(_without_self(found, rows, kk - 1), exact, kk - 1).mean())
        if recalls[str(factor)] >= target:
            return factor, recalls
    log.warning("re-ranking %d x k candidates reaches recall@%d %.3f only (target %.2f)",
                factors[-1], k, recalls[str(factors[-1])], target)
    return factors[-1], recalls


def _own_queries(vectors, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(vectors)
    rows = np.sort(np.random.default_rng(seed).choice(n, min(n_queries, n), replace=False))
    return rows, np.asarray(vectors[rows], dtype=np.float32)  # (q,), (q, d)


def _without_self(ids: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Each row of ``ids`` without the query's own id, cut or padded (-1) to ``k``."""
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for q, (found, own) in enumerate(zip(ids, rows)):
        kept = found[found != own][:k]
        out[q, : len(kept)] = kept
    return out


def measure_recall(
    index, vectors, *, k: int = 10, n_queries: int = 200, pool_factor: int = 10, seed: int = 0, norms=None
) -> dict[str, Any]:
    """Recall@1 and @k against exact search, with re-ranking and without.

    The queries are a random sample of the collection's own vectors.
    """
    from .metrics import recall_vs_exact

    n = len(vectors)
    rows, queries = _own_queries(vectors, n_queries, seed)
    kk = min(k, n)
    _, exact = exact_search(vectors, queries, kk, norms=norms)
    _, raw = search(index, queries, kk)
    _, reranked = search_reranked(index, vectors, queries, kk, pool_factor=pool_factor, norms=norms)
    return {
        "queries": int(len(rows)),
        "k": kk,
        "pool_factor": int(pool_factor),
        f"recall_at_{kk}": float(recall_vs_exact(reranked, exact, kk).mean()),
        "recall_at_1": float(recall_vs_exact(reranked, exact, 1).mean()),
        f"recall_at_{kk}_without_rerank": float(recall_vs_exact(raw, exact, kk).mean()),
        "recall_at_1_without_rerank": float(recall_vs_exact(raw, exact, 1).mean()),
    }
