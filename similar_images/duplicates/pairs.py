"""Candidate pairs: near-duplicates by batched k-NN, byte-identical files by content hash.

:func:`near_pairs` searches every vector of the database for its ``k`` nearest
neighbours, ``batch_size`` queries at a time, through the database's index with exact
re-ranked scores (or exactly, without an index), and keeps the pairs scoring at least
the threshold. Memory stays bounded by one batch of results: no ``n x n`` matrix is
ever made. :func:`identical_files` groups files with the same bytes: sizes first, then
SHA-256 only of files whose size is shared.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_BATCH = 1024
# Candidates re-scored per neighbour asked for. The pool a build records for search is
# chosen for the recall of ordinary neighbours (50 for 40,504 x 4096 synthetic vectors
# under IVF-PQ: 15x slower here); near-duplicates are among the index's best candidates.
# On that set, 3 found 95.8% of the planted pairs >= 0.9 and 10 found 98.7%
# (benchmarks/README.md, "Duplicates").
DEFAULT_POOL_FACTOR = 10
HASH_BLOCK = 1 << 20


class Pairs(NamedTuple):
    """Image pairs ``a[i] < b[i]`` (row ids) with their exact cosine ``score[i]``."""

    a: np.ndarray  # (p,) int64
    b: np.ndarray  # (p,) int64
    score: np.ndarray  # (p,) float32

    def __len__(self) -> int:
        return len(self.a)


def empty_pairs() -> Pairs:
    return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))


def unique_pairs(a, b, score) -> Pairs:
    """Order each pair as ``(low, high)``, drop self pairs and repeats (keep the best score)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    score = np.asarray(score, np.float32)
    low, high = np.minimum(a, b), np.maximum(a, b)
    keep = low != high
    low, high, score = low[keep], high[keep], score[keep]
    order = np.lexsort((-score, high, low))  # by pair, best score first
    low, high, score = low[order], high[order], score[order]
    first = np.ones(len(low), dtype=bool)
    first[1:] = (low[1:] != low[:-1]) | (high[1:] != high[:-1])
    return Pairs(low[first], high[first], score[first])


def near_pairs(db, *, threshold: float, k: int = 10, batch_size: int = DEFAULT_BATCH,
               pool_factor: int = DEFAULT_POOL_FACTOR, show_progress: bool = True) -> Pairs:
    """Every pair of images of ``db`` within each other's ``k`` nearest neighbours and
    scoring at least ``threshold`` (exact cosine).

    Args:
        db: an open :class:`~similar_images.search.SimilarImages`; its index (with exact
            re-ranking) is used when it has one.
        threshold: the lowest cosine kept.
        k: neighbours examined per image (the image itself not counted).
        batch_size: queries searched at a time (bounds memory).
        pool_factor: with an index, ``pool_factor * (k + 1)`` candidates per image are
            re-scored exactly.
        show_progress: show a progress bar with the rate and ETA.

    Returns:
        :class:`Pairs`, each pair once.
    """
    from tqdm.auto import tqdm

    from similar_images.db import index as ix
    from similar_images.db import ranking

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    database = db.database
    vectors = database.vectors  # (n, d) float32, memory-mapped
    n = len(vectors)
    norms = database.norms()  # (n,) read once
    parts: list[Pairs] = []
    with tqdm(total=n, desc="duplicates", unit="img", disable=not show_progress) as bar:
        for start in range(0, n, batch_size):
            queries = np.asarray(vectors[start:start + batch_size], dtype=np.float32)  # (m, d)
            deleted = database.deleted  # removed since the last compaction: neither queries nor results
            if database.index is None:
                scores, ids = ranking.drop_ids(*ranking.exact_search(vectors, queries, k + 1 + len(deleted), norms=norms),
                                               deleted, k + 1)  # (m, k + 1)
            else:  # exact cosines of the index's candidates
                scores, ids = ix.search_reranked(database.index, vectors, queries, k + 1, pool_factor=pool_factor,
                                                 norms=norms, exclude=deleted, refine=database.refine)
            rows = np.broadcast_to(np.arange(start, start + len(queries))[:, None], ids.shape)
            keep = (ids >= 0) & (ids != rows) & (scores >= threshold) & ~np.isin(rows, deleted)
            parts.append(unique_pairs(rows[keep], ids[keep], scores[keep]))
            bar.update(len(queries))
    if not parts:
        return empty_pairs()
    return unique_pairs(*(np.concatenate(column) for column in zip(*parts)))


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def identical_files(paths: Sequence[str | os.PathLike], *, show_progress: bool = True) -> list[list[int]]:
    """Sets of byte-identical files among ``paths``, as lists of their positions.

    Files are compared by size, then only files sharing a size are hashed (SHA-256).
    A file that cannot be read is left out (logged).

    Returns:
        One sorted list of positions per set of two or more identical files.
    """
    from tqdm.auto import tqdm

    by_size: dict[int, list[int]] = defaultdict(list)
    unreadable = []
    for i, path in enumerate(paths):
        try:
            by_size[os.stat(path).st_size].append(i)
        except OSError as exc:
            unreadable.append(exc)
    if unreadable:  # one line, not one per file: a collection may have moved
        log.warning("%d of %d files not compared by content, e.g. %s", len(unreadable), len(paths), unreadable[0])
    candidates = [i for same in by_size.values() if len(same) > 1 for i in same]
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i in tqdm(candidates, desc="hashing", unit="file", disable=not show_progress or not candidates):
        try:
            by_hash[file_sha256(paths[i])].append(i)
        except OSError as exc:
            log.warning("not compared by content: %s", exc)
    return sorted(sorted(same) for same in by_hash.values() if len(same) > 1)
