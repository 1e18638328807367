"""Faiss indexes as plain functions: arrays in, ``(scores, ids)`` out.

Every index here searches by cosine similarity: vectors are L2-normalised before they
are trained on, added or searched, and the index ranks by inner product. Index ids are
row numbers of the vectors file (row ``i`` has id ``i``), so a result maps straight to a
name and to the stored float32 vector used for exact re-ranking.

Index types (:data:`INDEX_TYPES`):

* ``ivfpq``: the original's index, IVF100 and PQ 16 x 8 bits (6.8 MB for 40,504 x 4096); the default.
  The IVF lists follow the collection's size (:mod:`index_plan`: 100 up to 100,000
  vectors, then 4 x sqrt(N)), and ``build`` measures ``nprobe`` and the re-ranking pool
  against a recall target (:mod:`tuning`).
* ``flat``: exact search, the full vectors in the index (16 KB a 4096-d vector).
* ``pca-ivfpq``: PCA to 256 dimensions, then IVF100,PQ16x8: the smallest (5.6 MB).
* ``opq-ivfpq``: a learned rotation to 256 dimensions (OPQ), then IVF100,PQ16x8: ranks
  better alone, so fewer candidates are re-ranked (2.6 MB at 1280-d; slower to train at 4096-d).
* ``hnsw``: an HNSW graph (32 links) over the full vectors: no training, large;
  removing images re-adds the kept ones.

Measurements: ``benchmarks/search.py``, ``build_index.py`` and ``benchmarks/README.md``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
from typing import Any

import numpy as np

from similar_images.db.index_plan import (  # noqa: F401 (re-exported: ix.plan_index and friends)
    DEFAULT_INDEX_TYPE,
    DEFAULT_NLIST,
    INDEX_TYPES,
    IVF_TYPES,
    MIN_TRAIN_VECTORS,
    POINTS_PER_CENTROID,
    IndexPlan,
    check_index_type,
    plan_index,
)
from similar_images.db.index_training import (  # noqa: F401 (re-exported: ix.train_index and friends)
    DEFAULT_TRAIN_SIZE,
    TRAIN_POINTS_PER_CENTROID,
    drop_training_state,
    ivf_of,
    no_polysemous_training,
    train_index,
    training_size,
)
from similar_images.db.ranking import (  # noqa: F401 (re-exported)
    exact_search,
    normalize,
    one_thread,
    prefetch_rows,
    rerank,
    row_norms,
)
from similar_images.fileio.files import atomic_path

log = logging.getLogger(__name__)

DEFAULT_NPROBE = 16
DEFAULT_EF_SEARCH = 128
DEFAULT_POOL_FACTOR = 10  # candidates re-ranked per result when the manifest records none (recall.py)
CHUNK = 8192
SMALL_ADD = 2048  # fewer rows are added on one thread (see add_vectors)


def new_index(plan: IndexPlan, dim: int):
    """An empty index of ``plan.spec`` (inner product), without polysemous training."""
    import faiss

    index = faiss.index_factory(dim, plan.spec, faiss.METRIC_INNER_PRODUCT)
    no_polysemous_training(index)
    return index


def add_vectors(index, vectors, *, show_progress: bool = False) -> None:
    """Normalise and append ``vectors`` ``(m, d)``; they get ids ``ntotal .. ntotal+m-1``."""
    from tqdm.auto import tqdm

    n = len(vectors)
    # Faiss encodes each chunk on all OpenMP threads (faiss.omp_get_max_threads(): the usable cores);
    # a few rows (those added since the index was written, on open) on one: see ranking.one_thread.
    threads = one_thread() if n < SMALL_ADD else contextlib.nullcontext()
    with threads, tqdm(total=n, unit="vec", desc="adding", disable=not show_progress or n < CHUNK) as bar:
        for start in range(0, n, CHUNK):
            chunk = normalize(vectors[start:start + CHUNK])  # (c, d)
            index.add(chunk)
            bar.update(len(chunk))


def build_index(
    vectors,
    index_type: str = DEFAULT_INDEX_TYPE,
    *,
    nlist: int | None = None,
    train_size: int = DEFAULT_TRAIN_SIZE,
    seed: int = 0,
    show_progress: bool = False,
    points_per_centroid: int = TRAIN_POINTS_PER_CENTROID,
    pq: int | None = None,
):
    """Train and fill an index over ``vectors`` ``(n, d)`` (raw or memory-mapped).

    The training sample is bounded (:func:`training_size`): ``points_per_centroid``
    vectors per centroid of the largest k-means, at most ``train_size``. ``nlist``:
    IVF lists; ``None``: from the collection's size (:func:`index_plan.plan_index`); ``pq``
    the bytes of a PQ code, likewise.

    Returns:
        ``(index, info)``: the Faiss index (id ``i`` is row ``i``) and a dict with
        ``index_type``, ``spec``, ``note``, ``train_size``, the default search
        parameters and ``plan`` (the lists' decision: ``nlist``, ``quantizer``, ``why``).
    """
    n, dim = vectors.shape
    # Lists and code sizes must fit the vectors the training sees, not the collection.
    plan = plan_index(index_type, n, dim, nlist=nlist, train_size=train_size, pq=pq)
    if plan.note:
        log.info("%s", plan.note)
    index = new_index(plan, dim)
    used = train_index(index, vectors, train_size=train_size, seed=seed, points_per_centroid=points_per_centroid)
    drop_training_state(index)
    add_vectors(index, vectors, show_progress=show_progress)
    info = {
        "index_type": plan.index_type,
        "requested_type": index_type,
        "spec": plan.spec,
        "note": plan.note,
        "train_size": used,
        "search_params": default_search_params(plan.index_type, plan),
        "plan": plan_record(plan),
    }
    return index, info


def plan_record(plan: IndexPlan) -> dict[str, Any]:
    """The lists' decision as the index manifest records it (``{}`` for indexes without lists)."""
    return {"nlist": plan.nlist, "quantizer": plan.quantizer, "why": plan.why} if plan.nlist else {}


def default_search_params(index_type: str, plan: IndexPlan | None = None) -> dict[str, int]:
    """Search parameters before ``build`` measures them (:mod:`tuning`)."""
    if index_type in IVF_TYPES:
        if plan is not None and plan.quantizer == "HNSW32":
            return {"nprobe": DEFAULT_NPROBE, "quantizer_efSearch": quantizer_ef_search(DEFAULT_NPROBE)}
        return {"nprobe": DEFAULT_NPROBE}
    if index_type == "hnsw":
        return {"efSearch": DEFAULT_EF_SEARCH}
    return {}


def quantizer_ef_search(nprobe: int) -> int:
    """An HNSW coarse quantizer's search breadth for ``nprobe`` lists: it must find the
    ``nprobe`` nearest centroids, so it explores at least twice as many."""
    return max(DEFAULT_EF_SEARCH, 2 * nprobe)


# The search parameters an index manifest may hold, each a whole number >= 1.
SEARCH_PARAMS = ("nprobe", "efSearch", "quantizer_efSearch")


def check_search_params(params: Any, where: str | os.PathLike) -> None:
    """Refuse search parameters Faiss would reject (or take silently, like ``nprobe: 0``).

    Raises:
        DatabaseError: naming ``where`` (the manifest), the field and the bad value.
    """
    from similar_images.errors import DatabaseError

    for name, value in (params.items() if isinstance(params, dict) else ()):
        if name not in SEARCH_PARAMS:
            raise DatabaseError(f"{where}: field 'search_params' has unknown parameter {name!r} "
                                f"(known: {', '.join(SEARCH_PARAMS)})")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DatabaseError(f"{where}: field 'search_params': {name!r} must be a whole number >= 1, "
                                f"got {value!r}")


def set_search_params(index, params: dict[str, Any], where: str | os.PathLike | None = None) -> None:
    """Apply ``{"nprobe": 16}`` / ``{"efSearch": 128}`` / ``{"quantizer_efSearch": 128}``
    (an IVF's HNSW coarse quantizer) to ``index`` (nested ones too).

    Raises:
        DatabaseError: Faiss refuses a parameter for this kind of index (``nprobe`` on
            HNSW); the message names ``where`` (the manifest) and the field.
    """
    import faiss

    from similar_images.errors import DatabaseError

    space = faiss.ParameterSpace()
    for name, value in params.items():
        try:
            space.set_index_parameter(index, name, value)
        except RuntimeError as exc:
            kind = type(faiss.downcast_index(index)).__name__
            raise DatabaseError(f"{where or 'index'}: field 'search_params': Faiss cannot set {name}={value!r} "
                                f"on this index ({kind}: {_faiss_reason(exc)})") from None


def _faiss_reason(exc: BaseException) -> str:
    """The reason in a Faiss error, without its C++ signature, source line and failed check.

    ``Error in void faiss::write_index(...) at impl/index_write.cpp:499: Error: 'ret == n' failed:
    write error in x: 1 != 2 (No space left on device)`` -> ``write error in x: 1 != 2 (No space ...)``.
    """
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
    text = re.split(r"\.(?:cpp|h):\d+: ", text)[-1]
    text = re.sub(r"^Error: '.*?' failed: ", "", text)
    return re.sub(r"^[\w:]+::\w+:\s*", "", text).strip()


def search(index, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Approximate search. ``queries`` ``(m, d)`` are normalised here.

    Returns:
        ``(scores, ids)``, each ``(m, k)``: inner products of normalised vectors
        (approximate for compressed indexes) and ids, ``-1`` where fewer than ``k``
        were found.
    """
    q = normalize(queries)  # (m, d)
    k = max(1, min(int(k), max(1, index.ntotal)))
    # One query is searched on one thread whatever the OpenMP setting (Faiss splits a batch by
    # queries): on a busy machine, waking a second thread for nothing cost more than the scan.
    with one_thread() if len(q) == 1 else contextlib.nullcontext():
        return index.search(q, k)


def search_reranked(
    index, vectors, queries, k: int, *, pool_factor: int = 10, norms=None, exclude=None, refine=None
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate search for ``pool_factor * k`` candidates, re-scored exactly.

    Scores are exact cosines against the stored float32 vectors (an image of the collection
    finds itself with 1.0). ``exclude`` (deleted ids) leave the pool, which grows by their number.
    ``refine`` (a :class:`refine.RefineStage`): the pool is first cut to the best few by their
    8-bit codes, whose rows are then asked of the disk together, and only those are re-scored.

    Returns:
        ``(scores, ids)`` ``(m, k)``, best first, padded with ``-inf`` / ``-1``.
    """
    exclude = np.zeros(0, dtype=np.int64) if exclude is None else exclude
    pool = max(k, int(pool_factor) * k) + len(exclude)
    _, candidates = search(index, queries, pool)  # (m, pool)
    if len(exclude):
        candidates = np.where(np.isin(candidates, exclude), -1, candidates)
    if refine is not None:
        candidates = refine.narrow(queries, candidates, k)
        prefetch_rows(vectors, candidates)
    return rerank(vectors, queries, candidates, k, norms=norms)


def index_dimension(index) -> int:
    """The dimension the index takes as input (before any PCA)."""
    return int(index.d)


def write_index(index, path: str | os.PathLike) -> None:
    """Write ``index`` to ``path`` atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        write_index_to(index, tmp)


def write_index_to(index, path: str | os.PathLike) -> None:
    """Write ``index`` to exactly ``path`` (the caller handles atomicity).

    Raises:
        OSError: Faiss could not write (it raises RuntimeError with the C library's
            message, such as "No space left on device"); the errno is recovered from
            that message where it can be, so callers report a full disk as one. It
            carries no file name: ``path`` is usually a staged file, and the caller
            names the final one.
    """
    import faiss

    try:
        faiss.write_index(index, str(path))
    except RuntimeError as exc:
        reason = _faiss_reason(exc)
        # Faiss ends its message with strerror: "... (No space left on device)" or ": No such file ..."
        code = next((c for c, text in _ERRNO_TEXTS.items() if reason.endswith((f"({text})", f": {text}"))), None)
        if code is None:
            raise OSError(errno.EIO, f"Faiss could not write the index ({reason})") from None
        raise OSError(code, os.strerror(code)) from None


_ERRNO_TEXTS = {code: os.strerror(code) for code in errno.errorcode}  # ENOSPC -> "No space left on device"


def read_index(path: str | os.PathLike):
    """Read a Faiss index; :class:`DatabaseError` naming the file if it is unreadable."""
    import faiss

    from similar_images.errors import DatabaseError

    if not os.path.exists(path):
        raise DatabaseError(f"{path}: index file not found (build it with `similar-images build`)")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise DatabaseError(f"{path}: not a readable Faiss index ({first})") from None
