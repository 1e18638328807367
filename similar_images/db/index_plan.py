"""Which index a collection gets: the Faiss factory string, chosen from the collection's size.

The number of IVF lists follows N, as a recorded decision rather than a habit:

* up to :data:`SMALL_COLLECTION` vectors, **100 lists**: the original's IVF100,PQ16x8 for
  the original's 40,504 COCO photos. Faiss' guideline (4 to 16 x sqrt(N)) would give 805
  there, but a query then scans only 6,500 codes of 16 bytes whichever the count, and
  measured on 40,504 x 1280 vectors, 805 lists neither raised recall nor cut latency while
  training took longer (``benchmarks/scale.py``, ``benchmarks/README.md``);
* past it, **4 x sqrt(N)** lists (Faiss' guideline, its low end: the fewer lists, the
  fewer training vectors and the cheaper the k-means), so a query scans a share of the
  index that shrinks as N grows, instead of 16 % of it;
* always at most one list per :data:`POINTS_PER_CENTROID` training vectors (Faiss'
  k-means warns below that): the training sample (``--train-size``) bounds the lists;
* from :data:`HNSW_QUANTIZER_LISTS` lists, the lists' centroids are found by an HNSW
  graph (``IVF{nlist}_HNSW32``) instead of comparing a vector with every centroid, which
  would cost more than scanning the lists themselves;
* the PQ codes: 16 bytes (the original's) up to :data:`SMALL_COLLECTION` vectors, then
  64 bytes: 16-byte codes rank 1280-d vectors too coarsely at 400,000, so a query
  re-ranked 100 x k candidates where 64-byte codes need 10 to 20 x k. Those 64 bytes are
  :data:`FAST_SCAN_PQ` sub-quantizers of 4 bits (Faiss' "fast-scan" ``PQ128x4fs``), not
  64 of 8 bits: the same bits a vector, but 16 centroids a sub-quantizer instead of 256,
  so encoding is 16 times cheaper and the lists are scanned with SIMD shuffles
  (``benchmarks/millions.py``: the 2,000,000 build took 1,483 s with PQ64x8, whose
  encoding would have put 10,000,000 past the 30-minute goal; a query 2.2 ms of CPU).
  ``--pq M`` asks for M bytes of 8-bit codes instead (the indexes built before).

``nprobe`` and the re-ranking pool are not planned here: ``build`` measures them
(:mod:`similar_images.db.tuning`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

INDEX_TYPES: dict[str, str] = {
    "ivfpq": "IVF{nlist}{quantizer},PQ{pq}x{nbits}",
    "flat": "Flat",
    "pca-ivfpq": "PCA{pca},IVF{nlist}{quantizer},PQ{pq}x{nbits}",
    "opq-ivfpq": "OPQ{pq}_{pca},IVF{nlist}{quantizer},PQ{pq}x{nbits}",
    "hnsw": "HNSW32",
}
DEFAULT_INDEX_TYPE = "ivfpq"
IVF_TYPES = ("ivfpq", "pca-ivfpq", "opq-ivfpq")  # trained: inverted lists of PQ codes
DEFAULT_NLIST = 100  # the original's lists, kept up to SMALL_COLLECTION vectors
SMALL_COLLECTION = 100_000
LISTS_PER_SQRT_N = 4  # Faiss' guideline: 4 to 16 x sqrt(N) lists
HNSW_QUANTIZER_LISTS = 4096  # from here the centroids are searched by a graph
HNSW_QUANTIZER = "_HNSW32"
MIN_TRAIN_VECTORS = 1000  # below this a trained index is not worth it: exact search is instant
DEFAULT_PQ = 16  # bytes a code: the original's PQ16, kept up to SMALL_COLLECTION vectors
# Past it, finer codes: measured on 400,000 x 1280 (benchmarks/pq_codes.py, the same 1,282
# lists), the build's pool for recall@10 0.95 was 100 x k with PQ16, 30 x k with PQ32 and
# 10 x k with PQ64, and a query's CPU 3.7, 2.0 and 1.5 ms; only PQ64 held 0.95 on held-out
# queries (0.955). Its training and encoding took longer (1,543 s against 536 s, at a higher
# load); 48 more bytes a vector in the index than PQ16.
LARGE_PQ = 64
# Past SMALL_COLLECTION the default codes are LARGE_PQ bytes of fast-scan: 2 x LARGE_PQ
# sub-quantizers of 4 bits (the largest count that divides the dimension, even, as fast-scan needs).
FAST_SCAN_PQ = 2 * LARGE_PQ
FAST_SCAN_SIZES = (128, 64, 32, 16)
PQ_SIZES = (64, 32, 16, 8)  # code sizes a dimension may be cut into (the largest that divides it is kept)
# Faiss' k-means wants at least 39 training points per centroid (and samples down to 256).
POINTS_PER_CENTROID = 39


class IndexPlan(NamedTuple):
    """What will be built: the type, the Faiss factory string, why it differs from what was
    asked (``note``, ``None`` when it does not), and the lists' decision (``nlist``: 0 for
    indexes without lists; ``quantizer``: ``"flat"`` or ``"HNSW32"``; ``why``: one sentence)."""

    index_type: str
    spec: str
    note: str | None
    nlist: int = 0
    quantizer: str = ""
    why: str = ""


def check_index_type(index_type: str) -> str:
    if index_type not in INDEX_TYPES:
        raise ValueError(
            f"unknown index type {index_type!r}; choose one of: {', '.join(INDEX_TYPES)}"
        )
    return index_type


def lists_for(n: int) -> tuple[int, str]:
    """The IVF lists ``n`` vectors call for, before the training bound, and why."""
    if n <= SMALL_COLLECTION:
        return DEFAULT_NLIST, (f"{DEFAULT_NLIST} lists up to {SMALL_COLLECTION:,} vectors "
                               "(the original's IVF100 for COCO's 40,504)")
    nlist = int(LISTS_PER_SQRT_N * math.sqrt(n))
    return nlist, f"{LISTS_PER_SQRT_N} x sqrt({n:,}) = {nlist} lists (Faiss' guideline)"


def codes_for(n: int, dim: int) -> tuple[int, str]:
    """Bytes a PQ code takes for ``n`` vectors of ``dim`` dimensions (after any PCA), and why."""
    if n <= SMALL_COLLECTION:
        wanted, why = DEFAULT_PQ, f"PQ{DEFAULT_PQ} up to {SMALL_COLLECTION:,} vectors (the original's)"
    else:
        wanted, why = LARGE_PQ, f"PQ{LARGE_PQ} past {SMALL_COLLECTION:,} vectors (finer codes: fewer candidates to re-rank)"
    pq = next((m for m in PQ_SIZES if m <= wanted and dim % m == 0), 0)
    if pq != wanted:
        why += f", PQ{pq}: the largest that divides {dim} dimensions"
    return pq, why


def fast_scan_codes_for(dim: int) -> tuple[int, str]:
    """Sub-quantizers of 4 bits for ``dim`` dimensions (a multiple of 16) past
    :data:`SMALL_COLLECTION`, and why."""
    m = next(m for m in FAST_SCAN_SIZES if dim % m == 0)
    why = (f"PQ{m}x4fs past {SMALL_COLLECTION:,} vectors ({m // 2}-byte codes of 4-bit sub-quantizers, "
           "scanned with SIMD: cheap to encode, fast to search)")
    return m, why


def plan_index(index_type: str, n: int, dim: int, *, nlist: int | None = None,
               train_size: int | None = None, pq: int | None = None) -> IndexPlan:
    """Choose the Faiss factory string for ``n`` vectors of ``dim`` dimensions.

    Args:
        nlist: IVF lists asked for; ``None``: from ``n`` (:func:`lists_for`).
        train_size: vectors the training sample may hold (default: all ``n``); the lists
            and PQ code sizes must fit the vectors the training sees.
        pq: bytes a PQ code takes; ``None``: from ``n`` (:func:`codes_for`).

    A collection too small to train the requested index gets fewer IVF lists and fewer
    PQ bits, or exact search below :data:`MIN_TRAIN_VECTORS`; ``note`` says so.
    """
    check_index_type(index_type)
    if index_type in ("flat", "hnsw"):
        return IndexPlan(index_type, INDEX_TYPES[index_type], None)
    trained_on = min(n, train_size) if train_size else n
    if trained_on < MIN_TRAIN_VECTORS:
        return IndexPlan(
            "flat", "Flat",
            f"{trained_on} vectors are too few to train {index_type!r} (needs {MIN_TRAIN_VECTORS}); "
            "using exact search (flat)",
        )
    pca = min(256, dim - dim % 16)  # PQ16 needs a multiple of 16
    if pca == 0:
        raise ValueError(f"{index_type} needs at least 16 dimensions, got {dim}")
    if index_type == "ivfpq" and dim % 16:
        raise ValueError(f"ivfpq needs a dimension divisible by 16, got {dim}")
    coded = dim if index_type == "ivfpq" else pca  # what the PQ cuts into sub-vectors
    if pq is not None and (pq < 1 or coded % pq):
        raise ValueError(f"--pq {pq} does not divide the {coded} dimensions the codes cover; "
                         f"choose one of: {', '.join(str(m) for m in PQ_SIZES if coded % m == 0)}")
    # ivfpq's dimension divides by 16 (checked above), so a fast-scan size always divides it
    fast = pq is None and index_type == "ivfpq" and n > SMALL_COLLECTION
    if pq is not None:
        pq_why = f"PQ{pq} asked for (--pq)"
    elif fast:
        pq, pq_why = fast_scan_codes_for(coded)
    else:
        pq, pq_why = codes_for(n, coded)
    wanted, why = lists_for(n) if nlist is None else (nlist, f"{nlist} lists asked for (--nlist)")
    bound = max(1, trained_on // POINTS_PER_CENTROID)
    use_nlist = max(1, min(wanted, bound))
    if use_nlist < wanted:
        why += f", bounded to {use_nlist} by the {trained_on:,} training vectors ({POINTS_PER_CENTROID} a list)"
    quantizer = HNSW_QUANTIZER if use_nlist >= HNSW_QUANTIZER_LISTS else ""
    if quantizer:
        why += f"; centroids searched by an HNSW graph (from {HNSW_QUANTIZER_LISTS} lists)"
    nbits = "4fs" if fast else max(4, min(8, int(math.log2(trained_on / POINTS_PER_CENTROID))))
    why += f"; {pq_why}"
    spec = INDEX_TYPES[index_type].format(nlist=use_nlist, nbits=nbits, pca=pca, quantizer=quantizer, pq=pq)
    notes = []
    if use_nlist != wanted:
        notes.append(f"{use_nlist} lists instead of {wanted}")
    if nbits not in (8, "4fs"):
        notes.append(f"{nbits}-bit codes instead of 8")
    note = f"{trained_on} vectors: {' and '.join(notes)} ({spec})" if notes else None
    return IndexPlan(index_type, spec, note, use_nlist, quantizer.lstrip("_") or "flat", why)
