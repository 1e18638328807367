"""The refine stage: 8-bit codes of the indexed rows, mapped from a file beside the index,
that score the index's candidates so only the best few are read from the store.

Why: at 10,000,000 x 1280 the float16 store (25.6 GB) does not fit a 24 GB machine's
memory, and the index hands the exact re-ranking 100 x k candidates: a query read 1,000
random rows from the disk (28 ms warm, 241 ms cold; benchmarks/README.md, "Search at
millions"). Faiss' 8-bit scalar quantizer keeps a row in one byte a value (12.8 GB at that
size: it fits, and it is mapped, not read at start-up). The candidates are scored from their
codes, decoded by Faiss' SIMD quantizer, and only the best :data:`EXACT_FACTOR` x k of them
are re-ranked from the store (``benchmarks/rerank_stage.py`` at 10,000,000: the best 20 of
1,000 kept recall@10 at 0.971, as re-ranking all 1,000 did).

Faiss' own ``IndexRefine`` scores candidates the same way, but keeps the codes inside the
index file: read whole by every open, and a mapped one cannot take the rows added since the
index was written (Faiss aborts the process). Here the codes cover the rows the index was
written with (ids ``0..rows-1``); rows added since are in memory and go to the exact
re-ranking whole.

Built past :data:`REFINE_FROM` vectors (``build --refine auto``), or on request (``yes``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from similar_images.db.integrity import check_file_sha, check_npy_structure
from similar_images.db.ranking import decoded_scores, normalize
from similar_images.db.vectors import write_npy
from similar_images.errors import DatabaseError
from similar_images.fileio.files import manifest_path, refine_codes_path

# Up to 2,000,000 x 1280 the exact re-ranking of the whole pool measured 0.87 ms (the store
# in memory); the stage costs one byte a value of memory, so it starts past twice that.
REFINE_FROM = 4_000_000
EXACT_FACTOR = 2  # candidates the codes pass on to the exact re-ranking, x k
TRAIN_ROWS = 100_000  # rows the quantizer's ranges are fitted on (a random sample)
CHOICES = ("auto", "yes", "no")
QUANTIZER = "8bit"  # Faiss' QT_8bit: one byte a value, a range per dimension
CHUNK = 8192


def refine_wanted(choice: str, n: int) -> bool:
    """Whether a build of ``n`` vectors writes refine codes (``choice``: one of :data:`CHOICES`)."""
    if choice not in CHOICES:
        raise ValueError(f"unknown --refine {choice!r}; choose one of: {', '.join(CHOICES)}")
    return choice == "yes" or (choice == "auto" and n >= REFINE_FROM)


def train_quantizer(vectors, *, sample: int = TRAIN_ROWS, seed: int = 0):
    """Faiss' 8-bit scalar quantizer fitted on a random sample of ``vectors`` (normalised)."""
    import faiss

    n, d = vectors.shape
    rows = np.sort(np.random.default_rng(seed).choice(n, min(n, sample), replace=False))
    sq = faiss.ScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit)
    sq.train(normalize(vectors[rows]))
    return sq


def quantizer_from(ranges, d: int):
    """The quantizer a manifest's ``ranges`` (``2 x d`` floats: Faiss' trained minima, then spans) describe."""
    import faiss

    sq = faiss.ScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit)
    faiss.copy_array_to_vector(np.asarray(ranges, dtype=np.float32), sq.trained)
    return sq


def write_codes(path: Path, sq, blocks, shape: tuple[int, int]) -> str:
    """Write the ``.npy`` of uint8 codes ``shape`` from ``blocks`` (each ``(c, d)`` uint8 codes
    already, or float rows to encode); return its sha256. Row by block: never all in memory."""
    codes = (b if b.dtype == np.uint8 else sq.compute_codes(normalize(b)) for b in blocks)  # (c, d) each
    return write_npy(path, shape, np.uint8, codes)


def row_blocks(vectors, chunk: int = CHUNK):
    """``vectors`` ``(n, d)`` as float32 blocks, for :func:`write_codes` to encode."""
    for start in range(0, len(vectors), chunk):
        yield np.asarray(vectors[start:start + chunk], dtype=np.float32)


def record(path: Path, sq, rows: int, sha: str, exact_factor: int = EXACT_FACTOR) -> dict[str, Any]:
    """The index manifest's ``refine`` field for codes just written to (staged) ``path``."""
    import faiss

    return {"quantizer": QUANTIZER, "rows": int(rows), "bytes": path.stat().st_size, "sha256": sha,
            "exact_factor": int(exact_factor),
            "ranges": [float(v) for v in faiss.vector_to_array(sq.trained)]}


class RefineStage:
    """Mapped codes ``(rows, d)`` uint8 of ids ``0..rows-1`` and their quantizer."""

    def __init__(self, codes: np.ndarray, sq, exact_factor: int = EXACT_FACTOR):
        self.codes, self.sq, self.exact_factor = codes, sq, int(exact_factor)
        self.rows = len(codes)

    def warm(self, *, wait: bool = False) -> None:
        """Read the codes file into the page cache on a background thread, once per file
        (a service calls it at start-up and after each write; it stays healthy meanwhile).
        Until then a query's pool is 1,000 random pages of the file, each a disk read."""
        path = getattr(self.codes, "filename", None)
        if path is None:
            return
        stat = os.stat(path)
        key = (path, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with _WARMING_LOCK:
            thread = _WARMING.get(key)
            if thread is None:
                thread = _WARMING[key] = threading.Thread(target=read_through, args=(path,), daemon=True,
                                                          name="refine-codes-warm")
                thread.start()
        if wait:
            thread.join()

    def scores(self, query: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """Cosines ``(p,)`` of normalised ``query`` ``(d,)`` with the decoded codes of ``cand``
        (sorted, ``< rows``): only the candidates' pages are read (1 byte a value)."""
        return decoded_scores(self.sq, self.codes[cand], query)

    def narrow(self, queries, candidates: np.ndarray, k: int) -> np.ndarray:
        """Each query's candidates ``(m, p)`` cut to the ``exact_factor x k`` best by their codes,
        plus every candidate the codes do not cover (rows added since: in memory, cheap to score
        exactly); ``-1`` pads. Returns ``(m, p')`` ids."""
        q = normalize(queries)  # (m, d)
        keep = max(k, self.exact_factor * k)
        kept = []
        for i, row in enumerate(np.asarray(candidates, dtype=np.int64)):
            coded = np.unique(row[(row >= 0) & (row < self.rows)])
            if len(coded) > keep:
                s = self.scores(q[i], coded)
                coded = coded[np.argpartition(-s, keep - 1)[:keep]]
            kept.append(np.concatenate([coded, row[row >= self.rows]]))
        width = max((len(c) for c in kept), default=0)
        out = np.full((len(kept), width), -1, dtype=np.int64)
        for i, c in enumerate(kept):
            out[i, : len(c)] = c
        return out


def read_through(path: str | os.PathLike, block: int = 16 << 20) -> int:
    """Read ``path`` from start to end (into the page cache); the bytes read."""
    buf = bytearray(block)
    total = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
    return total


_WARMING: dict[tuple, threading.Thread] = {}  # (path, inode, size, mtime) -> its reader: one a file
_WARMING_LOCK = threading.Lock()


def check_refine_codes(index_path: Path, im: dict[str, Any], *, deep: bool, fresh: bool = False) -> None:
    """The refine codes an index manifest names: present, of the recorded shape and size, and
    (``deep``) of the recorded sha256. The one check that open and verify share."""
    spec = im.get("refine")
    if spec is None:
        return
    path = refine_codes_path(index_path)
    if not isinstance(spec, dict) or spec.get("quantizer") != QUANTIZER or not _whole(spec.get("rows")) \
            or not _whole(spec.get("bytes")) or not isinstance(spec.get("sha256"), str) \
            or not _whole(spec.get("exact_factor"), 1) \
            or not isinstance(spec.get("ranges"), list) or len(spec["ranges"]) != 2 * int(im["dimension"]):
        raise DatabaseError(f"{manifest_path(index_path)}: field 'refine' is not a refine-codes record "
                            "(quantizer, rows, bytes, sha256, exact_factor, ranges); run `similar-images verify --repair`")
    if spec["rows"] != int(im["count"]):
        raise DatabaseError(f"{manifest_path(index_path)}: field 'refine': codes of {spec['rows']} rows for an index "
                            f"of {im['count']}; run `similar-images verify --repair`")
    if not path.exists():
        raise DatabaseError(f"{path}: refine codes not found (named by the index manifest); "
                            "run `similar-images verify --repair`")
    check_npy_structure(path, spec["rows"], int(im["dimension"]), dtype=np.uint8)
    if path.stat().st_size != spec["bytes"]:
        raise DatabaseError(f"{path}: {path.stat().st_size} bytes, its index manifest says {spec['bytes']}; "
                            "run `similar-images verify --repair`")
    if deep:
        check_file_sha(path, spec["sha256"], fresh=fresh, what="refine codes")


def open_refine_stage(index_path: Path, im: dict[str, Any], *, deep: bool, fresh: bool = False) -> RefineStage | None:
    """The refine stage of an index (checked by :func:`check_refine_codes`), or None without one."""
    check_refine_codes(index_path, im, deep=deep, fresh=fresh)
    spec = im.get("refine")
    if spec is None:
        return None
    return map_stage(refine_codes_path(index_path), spec, int(im["dimension"]))


def map_stage(path: Path, spec: dict[str, Any], d: int) -> RefineStage:
    """Map the codes at ``path`` (checked already) with the quantizer ``spec`` records."""
    if spec["rows"] == 0:
        return RefineStage(np.zeros((0, d), dtype=np.uint8), quantizer_from(spec["ranges"], d), spec["exact_factor"])
    offset = check_npy_structure(path, spec["rows"], d, dtype=np.uint8)
    codes = np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(spec["rows"], d))
    return RefineStage(codes, quantizer_from(spec["ranges"], d), spec["exact_factor"])


def _whole(value, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least
