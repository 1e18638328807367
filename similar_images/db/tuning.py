"""Search parameters measured at build time: ``nprobe`` and the re-ranking pool, from a recall target.

An IVF index answers a query by scanning the codes of ``nprobe`` of its lists, then
re-ranking ``pool x k`` candidates exactly against the stored vectors. More lists probed
find more true neighbours among fewer candidates; a larger pool forgives a coarser scan.
``build`` tries ``nprobe`` in :data:`NPROBES` (each a batched search of the collection's
own vectors, as in :func:`recall.pool_recalls`), takes for each the smallest pool that
reaches the target, and keeps the pair that reads the fewest bytes a query
(:func:`query_bytes`). The choice, its measured recall and every pair tried go into the
index manifest, so a user can see why a search probes what it probes.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np

from similar_images.db import index as ix
from similar_images.db.recall import POOL_FACTORS, TARGET_RECALL, OwnQueries, choose_pool_factor, pool_recalls
from similar_images.db.segments import Rows

log = logging.getLogger(__name__)

DEFAULT_RECALL_TARGET = TARGET_RECALL  # recall@10 against exact search, re-ranked (own vectors, self left out)
NPROBES = (4, 8, 16, 32, 64, 128, 256, 512)  # lists probed, tried in turn (at most nlist)


class SearchChoice(NamedTuple):
    """What ``build`` decided: the search parameters, the pool factor, the measured recall@k
    of that pair, whether it reached the target, the pairs tried, and why, in one sentence."""

    search_params: dict[str, int]
    pool_factor: int
    recall: float
    reached: bool
    trials: list[dict[str, Any]]
    why: str


def query_bytes(n: int, nlist: int, code_size: int, dim: int, nprobe: int, pool: int, k: int,
                value_bytes: int = 4) -> float:
    """Bytes a query reads, the cost model of the choice: the codes of ``nprobe`` lists
    (``n / nlist`` codes of ``code_size`` bytes each) and ``pool x k`` stored rows to re-rank
    (``value_bytes``: 4 for a float32 store, 2 for float16)."""
    return nprobe * n / max(1, nlist) * code_size + pool * k * value_bytes * dim


def stored_value_bytes(vectors) -> int:
    """Bytes of one stored value: 2 for a float16 store (its base file), else 4."""
    base = vectors.base if isinstance(vectors, Rows) else vectors
    return int(getattr(base, "dtype", np.dtype(np.float32)).itemsize)


def ivf_params(index, nprobe: int) -> dict[str, int]:
    """``{"nprobe": ...}``, with the HNSW coarse quantizer's breadth when the index has one."""
    import faiss

    ivf = ix.ivf_of(index)
    params = {"nprobe": int(nprobe)}
    if ivf is not None and isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW):
        params["quantizer_efSearch"] = ix.quantizer_ef_search(nprobe)
    return params


def choose_search(index, vectors, own: OwnQueries, *, k: int = 10, target: float = DEFAULT_RECALL_TARGET,
                  nprobe: int | None = None, factors: tuple[int, ...] = POOL_FACTORS,
                  params: dict[str, int] | None = None) -> SearchChoice:
    """Choose ``nprobe`` (IVF indexes; ``nprobe`` given: only the pool) and the pool factor
    that reach recall@k ``target`` at the least :func:`query_bytes`, and set them on ``index``.
    ``params``: the search parameters of an index without lists (HNSW's ``efSearch``), kept.

    When no pair reaches the target, the pair of the highest recall is kept and ``why``
    says so (the build prints it; ``--recall-target``, ``--nlist`` or ``--train-size``
    are the user's recourse).
    """
    ivf = ix.ivf_of(index)
    if ivf is None:  # flat, hnsw: only the pool to choose
        params = dict(params or {})
        ix.set_search_params(index, params)
        factor, recalls = choose_pool_factor(index, vectors, k=k, target=target, factors=factors, own=own)
        recall = recalls.get(str(factor), 1.0)
        trials = [{"pool_factor": int(f), "recall": r} for f, r in recalls.items()]
        return SearchChoice(params, factor, recall, recall >= target, trials,
                            f"{factor} x k candidates: the smallest pool measured to reach recall@{k} {target}")
    n, dim, nlist, code_size = len(vectors), vectors.shape[1], int(ivf.nlist), int(ivf.code_size)
    value_bytes = stored_value_bytes(vectors)
    ladder = [nprobe] if nprobe else [p for p in NPROBES if p < nlist] + [min(nlist, NPROBES[-1])]
    best: dict[str, Any] | None = None
    trials: list[dict[str, Any]] = []
    for probes in dict.fromkeys(ladder):
        cost_floor = query_bytes(n, nlist, code_size, dim, probes, 0, k, value_bytes)
        smaller = tuple(f for f in factors if best is None or f < best["pool_factor"])
        if best is not None and (cost_floor >= best["bytes"] or not smaller):
            break  # more lists probed cannot read less any more
        ix.set_search_params(index, ivf_params(index, probes))
        recalls = pool_recalls(index, vectors, k=k, target=target, factors=smaller, own=own, largest_first=True)
        for f, r in recalls.items():
            trials.append({"nprobe": probes, "pool_factor": int(f), "recall": r,
                           "bytes": round(query_bytes(n, nlist, code_size, dim, probes, int(f), k, value_bytes))})
        last = trials[-1] if recalls else None
        if last and last["recall"] >= target and (best is None or last["bytes"] < best["bytes"]):
            best = last
    reached = best is not None
    if best is None:  # the target is out of reach: the highest recall, then the fewest bytes
        best = max(trials, key=lambda t: (t["recall"], -t["bytes"]))
    params = ivf_params(index, best["nprobe"])
    ix.set_search_params(index, params)
    how = (f"nprobe {best['nprobe']} of {nlist} lists and {best['pool_factor']} x k candidates "
           f"(recall@{k} {best['recall']:.3f}, {best['bytes'] / 1e3:.0f} KB read a query)")
    if not reached:
        why = (f"{how}: recall@{k} {target} was not reached by any pair tried; the highest measured "
               "(a larger --nlist or --train-size, or a lower --recall-target, are the choices)")
        log.warning("%s", why)
    elif nprobe:
        why = f"{how}: nprobe asked for (--nprobe), the smallest pool measured to reach {target}"
    else:
        why = f"{how}: the fewest bytes among the pairs measured to reach recall@{k} {target}"
    return SearchChoice(params, int(best["pool_factor"]), float(best["recall"]), reached, trials, why)
