"""Index fidelity: how much of exact search does the database's search return, and how fast?

A sample of the database's own vectors is searched twice: with the database's search
(its index and re-ranking, exactly what users get) and by brute force over the stored
float32 vectors. Recall@k is the share of the exact top ``k`` found in the search's top
``k``; results tied in exact score with the ``k``-th exact result count as found, so
duplicate images cannot make a perfect search look imperfect. Latency is measured
one query at a time (what an interactive user waits) and in batches.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from similar_images.db.ranking import (
    normalize,  # the brute force below stays independent of the search path
)
from similar_images.db.recall import exact_scores_of, recall_vs_exact
from similar_images.evaluation.report import Report, describe_database, ranked_ids

logger = logging.getLogger(__name__)

DEFAULT_KS = (1, 10, 100)
CURVE_KS = (1, 2, 5, 10, 20, 50, 100)
CHUNK_ROWS = 8192


def brute_force_scores(vectors, queries, k: int) -> np.ndarray:
    """The ``k`` best exact cosine scores per query, best first, over all ``vectors``.

    Kept independent of the package's search code on purpose: it is the reference the
    search is measured against. Reads ``vectors`` (may be memory-mapped) in chunks.

    Returns:
        ``(m, k)`` float32.
    """
    q = normalize(queries)  # (m, d)
    best = np.full((len(q), 0), -np.inf, dtype=np.float32)
    for start in range(0, len(vectors), CHUNK_ROWS):
        chunk = normalize(vectors[start:start + CHUNK_ROWS])  # (c, d)
        both = np.concatenate([best, q @ chunk.T], axis=1)  # (m, k + c)
        keep = min(k, both.shape[1])
        best = -np.sort(-np.partition(both, both.shape[1] - keep, axis=1)[:, -keep:], axis=1)
    return best


def latency(db, queries: list, k: int = 10) -> dict[str, float]:
    """Milliseconds per query: one at a time (median, p95) and all in one batch (per query, best of 3)."""
    db.search(queries[:1], k=k)  # warm-up (the first call may page files in)
    times = []
    for query in queries:
        start = time.perf_counter()
        db.search([query], k=k)
        times.append((time.perf_counter() - start) * 1000.0)
    batched = float("inf")
    for _ in range(3):  # best of three: a busy machine only ever makes a run slower
        start = time.perf_counter()
        db.search(list(queries), k=k)
        batched = min(batched, (time.perf_counter() - start) * 1000.0 / len(queries))
    times = np.array(times)
    return {"median ms": float(np.median(times)), "p95 ms": float(np.percentile(times, 95)),
            "mean ms": float(times.mean()), "batched ms": batched, "k": k, "queries": len(queries)}


def score_system(db, vectors, *, queries: int = 1000, ks=DEFAULT_KS, latency_queries: int = 100,
                 seed: int = 0, show_progress: bool = True, desc: str = "fidelity") -> dict:
    """Recall against exact search at ``ks`` (and :data:`CURVE_KS`), plus latency, for one database."""
    n = len(vectors)
    rng = np.random.default_rng(seed)
    query_ids = np.sort(rng.choice(n, size=min(queries, n), replace=False))
    query_vectors = np.asarray(vectors[query_ids], dtype=np.float32)  # (q, d)
    k_max = min(max(max(ks), max(CURVE_KS)), n)
    found = ranked_ids(db, list(query_vectors), k_max, show_progress=show_progress, desc=desc)  # (q, k)
    exact_scores = brute_force_scores(vectors, query_vectors, k_max)  # (q, k)
    found_scores = exact_scores_of(vectors, query_vectors, found)  # (q, k)
    curve = {k: float(recall_vs_exact(found_scores, exact_scores, k).mean()) for k in CURVE_KS if k <= k_max}
    recalls = {f"recall@{k}": float(recall_vs_exact(found_scores, exact_scores, k).mean())
               for k in ks if k <= k_max}
    return {"images": n, "queries": len(query_ids), "database": describe_database(db), "recall": recalls,
            "curve": curve, "latency": latency(db, list(query_vectors[:latency_queries]), k=10)}


def fidelity_report(systems: dict, vectors_of, *, queries: int = 1000, ks=DEFAULT_KS, seed: int = 0,
                    show_progress: bool = True) -> Report:
    """Recall of each system's search against exact search, and its latency.

    Args:
        systems: label -> opened database.
        vectors_of: label -> the database's stored ``(n, d)`` float32 vectors (may be
            memory-mapped).
        queries: how many of the database's own vectors to search with.
        ks: recall cut-offs shown in the table.
    """
    per_system = {label: score_system(db, vectors_of[label], queries=queries, ks=ks, seed=seed,
                                      show_progress=show_progress, desc=f"fidelity {label}")
                  for label, db in systems.items()}
    recall_cols = list(next(iter(per_system.values()))["recall"])
    headers = ["system"] + recall_cols + ["ms/query", "p95 ms", "batched ms"]
    rows = [[label] + [r["recall"][c] for c in recall_cols]
            + [r["latency"]["median ms"], r["latency"]["p95 ms"], r["latency"]["batched ms"]]
            for label, r in per_system.items()]
    first = next(iter(per_system.values()))
    title = (f"Index fidelity: {first['queries']:,} own vectors as queries among {first['images']:,}, "
             f"recall vs exact search; latency at k=10, one query at a time (median, p95) and batched, seed {seed}")
    data = {"settings": {"queries": queries, "ks": list(ks), "seed": seed}, "systems": per_system}
    return Report("fidelity", title, headers, rows, data, plot=lambda fig: _plot(fig, per_system))


def _plot(figure, per_system: dict) -> None:
    ax = figure.subplots()
    lowest = 1.0
    for label, result in per_system.items():
        ks = [int(k) for k in result["curve"]]
        values = list(result["curve"].values())
        lowest = min([lowest] + values)
        ax.plot(ks, values, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xticks(list(CURVE_KS), [str(k) for k in CURVE_KS])
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k vs exact search")
    # zoomed on the range the curves use: near-perfect indexes differ in the third decimal
    ax.set_ylim(max(0.0, lowest - 0.05), 1.005)
    ax.grid(True, alpha=0.3)
    ax.set_title("Index fidelity: recall@k of the database's search against exact search")
    ax.legend(fontsize=8)
