"""Exact cosine ranking in NumPy: normalise, brute-force search, re-rank candidates.

These work on raw float32 vectors, usually the memory-mapped vectors file, read in
chunks or row by row, so a search never loads the whole collection into memory at
once. Scores are cosine similarities; ids are row numbers.
"""

from __future__ import annotations

import contextlib
import functools
import os

import numpy as np

from similar_images.db.segments import Rows

CHUNK = 8192


def normalize(x) -> np.ndarray:
    """L2-normalised float32 copy of ``x`` ``(n, d)``; all-zero rows stay zero."""
    x = np.array(x, dtype=np.float32, copy=True, ndmin=2)  # (n, d)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x /= np.maximum(norms, 1e-12)
    return x


def row_norms(vectors) -> np.ndarray:
    """``(n,)`` float32 L2 norms, read in chunks."""
    out = np.empty(len(vectors), dtype=np.float32)
    for start in range(0, len(vectors), CHUNK):
        out[start:start + CHUNK] = np.linalg.norm(np.asarray(vectors[start:start + CHUNK], dtype=np.float32), axis=1)
    return out


def exact_search(vectors, queries, k: int, *, norms=None) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force cosine search over ``vectors`` ``(n, d)``, read in chunks.

    Returns:
        ``(scores, ids)`` ``(m, k')`` with ``k' = min(k, n)``, best first.
    """
    q = normalize(queries)  # (m, d)
    n = len(vectors)
    k = max(1, min(int(k), n))
    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)  # (m, <=k) running best
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    for start in range(0, n, CHUNK):
        rows = np.asarray(vectors[start:start + CHUNK], dtype=np.float32)  # (c, d)
        row_norms = norms[start:start + CHUNK] if norms is not None else np.linalg.norm(rows, axis=1)
        s = (q @ rows.T) / np.maximum(row_norms, 1e-12)  # (m, c)
        ids = np.broadcast_to(np.arange(start, start + len(rows)), s.shape)
        best_s = np.concatenate([best_s, s], axis=1)
        best_i = np.concatenate([best_i, ids], axis=1)
        if best_s.shape[1] > k:
            keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]  # (m, k) unordered
            best_s = np.take_along_axis(best_s, keep, axis=1)
            best_i = np.take_along_axis(best_i, keep, axis=1)
    order = np.lexsort((best_i, -best_s), axis=1)  # best first, ties by lower id
    return np.take_along_axis(best_s, order, axis=1), np.take_along_axis(best_i, order, axis=1)


def rerank(vectors, queries, candidates, k: int, *, norms=None) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidate ids with exact cosine against the stored float32 vectors.

    Each query's candidates are read once, in row order, straight from ``vectors``
    (usually the memory map) by Faiss' one-thread SIMD kernels, without copying them
    (:func:`candidate_scores`); other arrays (a float16 store) take the NumPy path
    (:func:`rerank_numpy`), which scores float32 copies of the rows. Both give the same ids
    and the same float32 cosines (to float32 rounding) for the same stored values.

    Args:
        vectors: ``(n, d)`` float32 or float16, raw, usually memory-mapped (only candidate rows are read).
        queries: ``(m, d)``.
        candidates: ``(m, p)`` int ids, ``-1`` for none.
        k: results to keep per query.
        norms: optional ``(n,)`` precomputed row norms.

    Returns:
        ``(scores, ids)`` ``(m, k)``, best first, padded with ``-inf`` / ``-1``.
    """
    if isinstance(vectors, Rows):  # the base file in place, the rows added since from memory
        return rerank_split(vectors, queries, candidates, k, norms=norms)
    half = _direct_ok(vectors, np.float16)  # a float16 store: its candidates decoded by Faiss
    if not (half or _direct_ok(vectors)):
        return rerank_numpy(vectors, queries, candidates, k, norms=norms)
    q = normalize(queries)  # (m, d)
    candidates = np.asarray(candidates, dtype=np.int64)
    n = len(vectors)
    scores = np.full((len(q), k), -np.inf, dtype=np.float32)
    ids = np.full((len(q), k), -1, dtype=np.int64)
    for i in range(len(q)):
        row = candidates[i]
        cand = np.unique(row[(row >= 0) & (row < n)])  # sorted: one forward pass over the file
        if len(cand) == 0:
            continue
        s = half_scores(vectors, q[i], cand) if half else candidate_scores(vectors, q[i], cand, norms=norms)  # (p,)
        top = _top(s, k)
        scores[i, : len(top)] = s[top]
        ids[i, : len(top)] = cand[top]
    return scores, ids


def candidate_scores(vectors, query: np.ndarray, cand: np.ndarray, *, norms=None) -> np.ndarray:
    """Cosines ``(p,)`` of normalised ``query`` ``(d,)`` with rows ``cand`` (sorted int64, in range).

    Faiss' ``fvec_inner_products_by_idx`` reads the rows in place; one OpenMP thread
    (this thread's setting only), as a single query's few hundred rows are not worth
    waking others (on a busy 2-core machine that wait was 12 ms instead of 0.4).
    Without ``norms`` the rows' norms come from a second such pass (distances to zero).
    """
    import faiss

    d = vectors.shape[1]
    query = np.ascontiguousarray(query, dtype=np.float32)
    cand = np.ascontiguousarray(cand, dtype=np.int64)
    dots = np.empty(len(cand), dtype=np.float32)
    with one_thread():
        faiss.fvec_inner_products_by_idx(faiss.swig_ptr(dots), faiss.swig_ptr(query), faiss.swig_ptr(vectors),
                                         faiss.swig_ptr(cand), d, 1, len(cand))
        if norms is None:
            sq = np.empty(len(cand), dtype=np.float32)
            zero = np.zeros(d, dtype=np.float32)  # a name holds it: swig_ptr keeps no reference
            faiss.fvec_L2sqr_by_idx(faiss.swig_ptr(sq), faiss.swig_ptr(zero),
                                    faiss.swig_ptr(vectors), faiss.swig_ptr(cand), d, 1, len(cand))
            cand_norms = np.sqrt(sq)
        else:
            cand_norms = np.asarray(norms[cand], dtype=np.float32)
    return dots / np.maximum(cand_norms, 1e-12)


def half_scores(vectors, query: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """:func:`candidate_scores` for a float16 store: the candidates' rows are gathered (2 bytes
    a value) and scored by :func:`decoded_scores` (NumPy's float16 cast and OpenBLAS's threads
    were the slow parts)."""
    rows = np.ascontiguousarray(vectors[cand])  # (p, d) float16: only the candidates' rows are read
    return decoded_scores(_fp16_codec(vectors.shape[1]), rows.view(np.uint8), query)


def decoded_scores(codec, codes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosines ``(p,)`` of normalised ``query`` ``(d,)`` with ``codes`` ``(p, code bytes)``
    decoded to float32 by Faiss' SIMD scalar quantizer ``codec`` and scored with their own
    norms, all on one thread (a float16 store's rows, the refine stage's 8-bit codes)."""
    import faiss

    d, p = int(codec.d), len(codes)
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    block = np.empty((p, d), dtype=np.float32)  # (p, d)
    query = np.ascontiguousarray(query, dtype=np.float32)
    dots, sq = np.empty(p, dtype=np.float32), np.empty(p, dtype=np.float32)
    with one_thread():
        codec.decode_c(faiss.swig_ptr(codes), faiss.swig_ptr(block), p)
        faiss.fvec_inner_products_ny(faiss.swig_ptr(dots), faiss.swig_ptr(query), faiss.swig_ptr(block), d, p)
        faiss.fvec_norms_L2sqr(faiss.swig_ptr(sq), faiss.swig_ptr(block), d, p)
    return dots / np.maximum(np.sqrt(sq), 1e-12)


def prefetch_rows(vectors, candidates) -> None:
    """Ask the kernel for the candidates' rows of a mapped store all at once
    (``posix_fadvise(WILLNEED)``: it queues the reads and returns), so a re-ranking whose rows
    are on disk waits for the disk about once, not once a row (10 random rows read one after
    another took 5.9 ms at 10,000,000 x 1280). Rows in memory (added ones) need nothing."""
    base = vectors.base if isinstance(vectors, Rows) else vectors
    if not isinstance(base, np.memmap) or base.filename is None or not hasattr(os, "posix_fadvise"):
        return
    ids = np.asarray(candidates, dtype=np.int64).ravel()
    ids = np.unique(ids[(ids >= 0) & (ids < len(base))])
    row_bytes = int(base.shape[1]) * base.dtype.itemsize
    fd = os.open(base.filename, os.O_RDONLY)
    try:
        for i in ids.tolist():
            os.posix_fadvise(fd, int(base.offset) + i * row_bytes, row_bytes, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=8)
def _fp16_codec(d: int):
    """Faiss' float16 scalar quantizer for ``d`` dimensions: its codes are IEEE float16 rows."""
    import faiss

    return faiss.ScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16)


@contextlib.contextmanager
def one_thread():
    """Faiss on one OpenMP thread in this block (this thread's setting only): work of a few
    hundred rows is not worth waking the others, and on a busy 2-core machine the wait was
    12 ms instead of 0.4 for a re-ranking, and 1 s instead of 2-10 ms for adding 30 rows."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def _direct_ok(vectors, dtype=np.float32) -> bool:
    """Faiss can read ``vectors`` in place: a C-contiguous 2-d NumPy array (or memory map) of ``dtype``."""
    return (isinstance(vectors, np.ndarray) and vectors.ndim == 2 and vectors.dtype == dtype
            and vectors.flags.c_contiguous and len(vectors) > 0)


def rerank_numpy(vectors, queries, candidates, k: int, *, norms=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rerank` in NumPy: gathers each query's candidate rows, then one product."""
    q = normalize(queries)  # (m, d)
    candidates = np.asarray(candidates, dtype=np.int64)
    m = len(q)
    scores = np.full((m, k), -np.inf, dtype=np.float32)
    ids = np.full((m, k), -1, dtype=np.int64)
    n = len(vectors)
    for i in range(m):
        row = candidates[i]
        cand = np.unique(row[(row >= 0) & (row < n)])  # sorted: friendly to the mmap
        if len(cand) == 0:
            continue
        rows = np.asarray(vectors[cand], dtype=np.float32)  # (p, d)
        row_norms = norms[cand] if norms is not None else np.linalg.norm(rows, axis=1)
        s = rows @ q[i] / np.maximum(row_norms, 1e-12)  # (p,)
        top = _top(s, k)
        scores[i, : len(top)] = s[top]
        ids[i, : len(top)] = cand[top]
    return scores, ids


def rerank_split(rows: Rows, queries, candidates, k: int, *, norms=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rerank` over a base file and added rows: base candidates read in place by
    :func:`candidate_scores`, added ones scored in NumPy; the best ``k`` of both."""
    base_cand = np.where(np.asarray(candidates) < rows.split, candidates, -1)
    added_cand = np.where(np.asarray(candidates) >= rows.split, candidates, -1)
    base_s, base_i = rerank(rows.base, queries, base_cand, k, norms=norms)
    added_s, added_i = rerank_numpy(rows, queries, added_cand, k, norms=norms)
    return best_of(np.concatenate([base_s, added_s], axis=1), np.concatenate([base_i, added_i], axis=1), k)


def best_of(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of each row of ``(m, p)`` ``scores`` / ``ids`` (``-1`` ids last), best first."""
    scores = np.where(ids >= 0, scores, -np.inf)
    order = np.lexsort((np.where(ids >= 0, ids, np.iinfo(np.int64).max), -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def drop_ids(scores: np.ndarray, ids: np.ndarray, excluded: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Results without the ``excluded`` ids (deleted items), the best ``k`` kept, padded with ``-1``."""
    if len(excluded):
        ids = np.where(np.isin(ids, excluded), -1, ids)
    scores, ids = best_of(scores, ids, k)
    if scores.shape[1] < k:  # fewer candidates than k: pad
        pad = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
    return scores, ids


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first (ties: lower index first)."""
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]
