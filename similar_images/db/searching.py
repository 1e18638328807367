"""Search a database as it is now: the index (or exact search), the rows added since the
index was written (encoded into it on open), and the deleted ids dropped from every result."""

from __future__ import annotations

import numpy as np

from similar_images.db import index as ix
from similar_images.db import ranking
from similar_images.db.database import Database


def search_database(db: Database, queries: np.ndarray, k: int, *, pool_factor: int,
                    rerank: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` ``(m, k)`` for raw ``queries`` ``(m, d)``; ``-1`` ids where fewer were found.

    Without an index, exact search; with one, ``pool_factor * k`` candidates re-scored
    exactly (``rerank``; cut first by the index's refine stage when it has one) or the
    index's own scores. With the norms known (warm), each
    candidate row is read once, not twice.
    """
    deleted = db.deleted  # removed since the last compaction
    if db.index is None:
        scores, ids = ranking.exact_search(db.vectors, queries, k + len(deleted), norms=db.norms())
        return ranking.drop_ids(scores, ids, deleted, min(k, len(db)))
    if rerank:
        return ix.search_reranked(db.index, db.vectors, queries, k, pool_factor=pool_factor, norms=db.known_norms,
                                  exclude=deleted, refine=db.refine)
    return ranking.drop_ids(*ix.search(db.index, queries, k + len(deleted)), deleted, k)
