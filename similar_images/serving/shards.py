"""A shard: one id range of a database, searched on its own; the merge of the shards' top-k.

A shard replica opens the whole database (the vectors are memory-mapped, so it reads only
its range's rows) and keeps, of the index, only its ids: an IVF index keeps its trained
quantizers and copies the entries of its id range into its own lists
(``IndexIVF.copy_subset_to``); a flat index or none is searched exactly over the range.
Each shard re-ranks its own candidates exactly against the stored float32 vectors, so the
scores the router merges are exact cosines and comparable across shards.

Why the merge equals the one-index result (up to ties): with exact search (flat or no
index), each shard returns the exact top-k of its range, and the top-k of the union is the
top-k of all. With IVF, every shard probes the same lists as the one index (the same
quantizer and nprobe) and re-ranks the best ``pool`` of its own entries; the one index's
pool, restricted to a shard, lies within that shard's pool, so the merged candidates hold
the one index's, and after exact re-ranking the merged top-k scores are at least the one
index's, rank by rank (equal when the one index's pool already held the best of the probed
lists, as it does at the recall the build measures).
"""

from __future__ import annotations

import logging

import numpy as np

from similar_images.db import index as ix
from similar_images.db import ranking
from similar_images.db.database import Database
from similar_images.db.segments import Rows

log = logging.getLogger(__name__)


class ShardSearcher:
    """Search the ids ``start..stop-1`` (``stop`` None: to the end) of an opened database.

    Raises:
        ValueError: an index that cannot be split by ids (HNSW): use a flat or IVF index.
    """

    def __init__(self, db: Database, start: int, stop: int | None, *, pool_factor: int | None = None):
        self.db, self.start = db, int(start)
        self.stop = db.id_count if stop is None else min(int(stop), db.id_count)
        deleted = db.deleted
        self.deleted = deleted[(deleted >= self.start) & (deleted < self.stop)]  # (t,) int64
        recorded = (db.index_manifest or {}).get("pool_factor", ix.DEFAULT_POOL_FACTOR)
        self.pool_factor = int(pool_factor or recorded)
        self.index = None if db.index is None or _is_flat(db.index) else subset_index(db.index, self.start, self.stop)

    def __len__(self) -> int:
        return self.stop - self.start - len(self.deleted)

    def search(self, queries: np.ndarray, k: int, *, rerank: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)`` ``(m, k)`` of this range, global ids, ``-1`` padded; exact scores when ``rerank``."""
        q = np.asarray(queries, dtype=np.float32).reshape(-1, self.db.dimension)  # (m, d)
        if self.stop <= self.start:
            return ranking.drop_ids(np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64),
                                    self.deleted, k)
        if self.index is None:
            parts = [_offset(ranking.exact_search(rows, q, k + len(self.deleted)), first)
                     for first, rows in _pieces(self.db.vectors, self.start, self.stop)]
            return merge(parts, k, exclude=self.deleted)
        if rerank:
            return ix.search_reranked(self.index, self.db.vectors, q, k, pool_factor=self.pool_factor,
                                      exclude=self.deleted, refine=self.db.refine)
        return ranking.drop_ids(*ix.search(self.index, q, k + len(self.deleted)), self.deleted, k)


def merge(parts: list[tuple[np.ndarray, np.ndarray]], k: int, *,
          exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of several ``(scores, ids)`` answers to the same queries (ties: lower id
    first, as every search here), ``-1`` padded; ``exclude`` ids dropped."""
    scores = np.concatenate([s for s, _ in parts], axis=1)  # (m, sum of k_i)
    ids = np.concatenate([i for _, i in parts], axis=1)
    return ranking.drop_ids(scores, ids, np.zeros(0, np.int64) if exclude is None else exclude, k)


def subset_index(index, start: int, stop: int):
    """A copy of an IVF ``index`` (with its PCA/OPQ transform) holding only ids ``start..stop-1``.

    The copy is made whole, then emptied and given the range's entries: the peak is one
    more index in memory while a shard opens; afterwards it holds its range only.
    """
    import faiss

    ivf = ix.ivf_of(index)
    if ivf is None:
        raise ValueError(f"an index of type {type(faiss.downcast_index(index)).__name__} cannot be split by ids; "
                         "shards need a flat or IVF index (build one with --index-type ivfpq or flat)")
    part = faiss.clone_index(index)
    part_ivf = ix.ivf_of(part)
    part_ivf.reset()
    ivf.copy_subset_to(part_ivf, faiss.InvertedLists.SUBSET_TYPE_ID_RANGE, start, stop)
    part.ntotal = part_ivf.ntotal  # an IndexPreTransform counts its own
    return part


def _is_flat(index) -> bool:
    import faiss

    return isinstance(faiss.downcast_index(index), faiss.IndexFlat)


def _pieces(vectors, start: int, stop: int):
    """``(first id, rows)`` views of ``start..stop-1``: the memory map and the added rows apart (no copy)."""
    if isinstance(vectors, Rows):
        if start < vectors.split:
            yield start, vectors.base[start:min(stop, vectors.split)]
        if stop > vectors.split:
            first = max(start, vectors.split)
            yield first, vectors.added[first - vectors.split:stop - vectors.split]
    else:
        yield start, vectors[start:stop]


def _offset(found: tuple[np.ndarray, np.ndarray], first: int) -> tuple[np.ndarray, np.ndarray]:
    scores, ids = found
    return scores, ids + first
