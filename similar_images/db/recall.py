"""How well an index agrees with exact search, measured on a collection's own vectors.

``build`` uses these to report recall@10 and to choose the re-ranking pool: the
smallest number of candidates (a factor of k) that the index must propose so that
exact re-ranking finds the true nearest neighbours.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np

from similar_images.db.index import search, search_reranked
from similar_images.db.ranking import exact_search, normalize, rerank

log = logging.getLogger(__name__)

# The build picks the smallest factor (candidates = factor x k) whose recall@10 of a
# collection's own vectors (each one's own id left out) reaches the target.
POOL_FACTORS = (10, 20, 30, 40, 50, 100)  # 40: opq-ivfpq at 1280-d sat at 0.96-0.975 with 30
TARGET_RECALL = 0.95
# Scores this close to the exact k-th score count as ties: any of them is a right answer.
TIE_TOLERANCE = 1e-5


def recall_vs_exact(found_scores, exact_scores, k: int, tol: float = TIE_TOLERANCE) -> np.ndarray:
    """Per query, the share of the top ``k`` found whose exact score reaches the exact ``k``-th score.

    This is recall@k against brute force with ties counted: when several vectors share
    the k-th score, returning any of them is right. It is the one definition used by
    ``build``, ``evaluate`` and the benchmarks.

    Args:
        found_scores: ``(n, >=k)`` exact cosine of each returned id (``-inf`` for none),
            see :func:`exact_scores_of`.
        exact_scores: ``(n, >=k)`` brute-force scores, best first.
        k: cut-off.

    Returns:
        ``(n,)`` float64 in [0, 1].
    """
    found = np.asarray(found_scores, dtype=np.float64)
    exact = np.asarray(exact_scores, dtype=np.float64)
    if found.ndim != 2 or exact.ndim != 2 or found.shape[0] != exact.shape[0]:
        raise ValueError(f"found {found.shape} and exact {exact.shape} must be (queries, ranks)")
    if exact.shape[1] < k or found.shape[1] < k:
        raise ValueError(f"rankings of {found.shape[1]} and {exact.shape[1]} columns, fewer than k={k}")
    kth = exact[:, k - 1:k]  # (n, 1)
    return (found[:, :k] >= kth - tol).sum(axis=1) / k


def exact_scores_of(vectors, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Exact cosine between each query ``(n, d)`` and each of its result ids ``(n, m)``; ``-inf`` for ``-1``."""
    q = normalize(np.asarray(queries, dtype=np.float32))  # (n, d)
    ids = np.asarray(ids)
    out = np.full(ids.shape, -np.inf, dtype=np.float32)
    for row in range(len(ids)):
        valid = ids[row] >= 0
        if valid.any():
            rows = np.asarray(vectors[ids[row][valid]], dtype=np.float32)  # (m, d)
            norms = np.maximum(np.linalg.norm(rows, axis=1), 1e-12)
            out[row, valid] = rows @ q[row] / norms
    return out


def recall_of_ids(vectors, queries, found_ids, exact_ids, k: int) -> np.ndarray:
    """:func:`recall_vs_exact` for two id rankings over ``vectors`` (scores looked up exactly)."""
    return recall_vs_exact(exact_scores_of(vectors, queries, found_ids),
                           exact_scores_of(vectors, queries, exact_ids), k)


class OwnQueries(NamedTuple):
    """A sample of the collection's own vectors as queries, with their exact top ``k + 1`` (self included)."""

    rows: np.ndarray  # (q,) row numbers
    queries: np.ndarray  # (q, d)
    exact: np.ndarray  # (q, min(k + 1, n)) exact ids, best first


def own_queries(vectors, *, k: int = 10, n_queries: int = 200, seed: int = 0) -> OwnQueries:
    """The queries :func:`choose_pool_factor` and :func:`measure_recall` share (one exact search)."""
    rows, queries = _own_queries(vectors, n_queries, seed)
    _, exact = exact_search(vectors, queries, min(k + 1, len(vectors)))
    return OwnQueries(rows, queries, exact)


def choose_pool_factor(
    index, vectors, *, k: int = 10, n_queries: int = 200, seed: int = 0,
    target: float = TARGET_RECALL, factors: tuple[int, ...] = POOL_FACTORS, own: OwnQueries | None = None,
) -> tuple[int, dict[str, float]]:
    """The smallest re-ranking pool factor whose recall@k reaches ``target``.

    Queries are own vectors, and each query's own id is left out of both rankings,
    so what is measured is how well the *other* neighbours are found: what a new photo
    (not in the collection) gets. The index is searched once, in one batch, for the
    largest pool; each smaller pool is the head of that ranking (what a search for
    fewer candidates returns), re-ranked exactly.

    Args:
        own: queries from :func:`own_queries` (default: made here from ``k``, ``n_queries``, ``seed``).

    Returns:
        ``(factor, {str(factor): recall, ...})`` for the factors tried.
    """
    recalls = pool_recalls(index, vectors, k=k, n_queries=n_queries, seed=seed, target=target, factors=factors,
                           own=own)
    if not recalls:
        return factors[0], {}
    factor = int(next(reversed(recalls)))
    if recalls[str(factor)] < target:
        log.warning("re-ranking %d x k candidates reaches recall@%d %.3f only (target %.2f)",
                    factor, k, recalls[str(factor)], target)
    return factor, recalls


def pool_recalls(
    index, vectors, *, k: int = 10, n_queries: int = 200, seed: int = 0,
    target: float = TARGET_RECALL, factors: tuple[int, ...] = POOL_FACTORS, own: OwnQueries | None = None,
    largest_first: bool = False,
) -> dict[str, float]:
    """Recall@k of each pool factor in turn (own queries, self left out), up to the first
    that reaches ``target``: ``{str(factor): recall}`` in the order tried (``{}`` below 2 vectors).

    ``largest_first``: measure the largest pool first and stop there if it misses the
    target (no smaller pool can reach it: the candidates are the head of its ranking).
    """
    kk = min(k + 1, len(vectors))
    if kk < 2:
        return {}
    rows, queries, exact = own or own_queries(vectors, k=k, n_queries=n_queries, seed=seed)
    exact = without_self(exact, rows, kk - 1)
    exact_scores = exact_scores_of(vectors, queries, exact)
    _, pool = search(index, queries, max(factors) * kk)  # (q, largest pool), best first
    recalls: dict[str, float] = {}

    def measure(factor: int) -> float:
        _, found = rerank(vectors, queries, pool[:, : factor * kk], kk)
        found = without_self(found, rows, kk - 1)
        return float(recall_vs_exact(exact_scores_of(vectors, queries, found), exact_scores, kk - 1).mean())

    if largest_first and (ceiling := measure(max(factors))) < target:
        return {str(max(factors)): ceiling}
    for factor in factors:
        recalls[str(factor)] = ceiling if largest_first and factor == max(factors) else measure(factor)
        if recalls[str(factor)] >= target:
            break
    return recalls


def _own_queries(vectors, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(vectors)
    rows = np.sort(np.random.default_rng(seed).choice(n, min(n_queries, n), replace=False))
    return rows, np.asarray(vectors[rows], dtype=np.float32)  # (q,), (q, d)


def without_self(ids: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Each row of ``ids`` without the query's own id, cut or padded (-1) to ``k``."""
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for q, (found, own) in enumerate(zip(ids, rows)):
        kept = found[found != own][:k]
        out[q, : len(kept)] = kept
    return out


def measure_recall(
    index, vectors, *, k: int = 10, n_queries: int = 200, pool_factor: int = 10, seed: int = 0, norms=None,
    own: OwnQueries | None = None, refine=None,
) -> dict[str, Any]:
    """Recall@1 and @k against exact search, with re-ranking and without.

    The queries are a random sample of the collection's own vectors (``own``, from
    :func:`own_queries`, or made here). ``refine``: the index's refine stage, which the
    re-ranked searches go through as a search does.
    """
    n = len(vectors)
    kk = min(k, n)
    if own is None:
        rows, queries = _own_queries(vectors, n_queries, seed)
        _, exact = exact_search(vectors, queries, kk, norms=norms)
    else:
        rows, queries, exact = own
        exact = exact[:, :kk]
    _, raw = search(index, queries, kk)
    _, reranked = search_reranked(index, vectors, queries, kk, pool_factor=pool_factor, norms=norms, refine=refine)
    return {
        "queries": int(len(rows)),
        "k": kk,
        "pool_factor": int(pool_factor),
        f"recall_at_{kk}": float(recall_of_ids(vectors, queries, reranked, exact, kk).mean()),
        "recall_at_1": float(recall_of_ids(vectors, queries, reranked, exact, 1).mean()),
        f"recall_at_{kk}_without_rerank": float(recall_of_ids(vectors, queries, raw, exact, kk).mean()),
        "recall_at_1_without_rerank": float(recall_of_ids(vectors, queries, raw, exact, 1).mean()),
    }
