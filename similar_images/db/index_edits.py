"""Edits of a trained Faiss index in place: delete ids and renumber the rest (compaction)."""

from __future__ import annotations

import logging

import numpy as np

from similar_images.db import index as ix

log = logging.getLogger(__name__)


def remove_ids(index, rows, *, kept_vectors=None) -> None:
    """Delete ids ``rows`` and renumber the rest so ids stay equal to row numbers.

    After the call, the vector that had id ``j`` has id ``j - (number of removed ids
    below j)``, matching a vectors file with those rows deleted. IVF indexes are edited
    in place; flat indexes compact themselves; HNSW cannot delete, and fast-scan lists
    (``PQ...x4fs``, packed in blocks of 32) cannot be renumbered in place, so those are
    emptied and ``kept_vectors`` (the remaining rows, in order) are added again, without training.
    """
    import faiss

    removed = np.unique(np.asarray(rows, dtype=np.int64))  # sorted
    if len(removed) == 0:
        return
    if _is_ivf(index) and _renumberable(faiss.extract_index_ivf(index)):
        index.remove_ids(faiss.IDSelectorBatch(removed))
        _renumber_ivf(faiss.extract_index_ivf(index), removed)
    elif isinstance(faiss.downcast_index(index), faiss.IndexFlat):
        index.remove_ids(faiss.IDSelectorBatch(removed))
    else:
        if kept_vectors is None:
            raise ValueError("this index cannot delete in place; pass kept_vectors")
        kept = kept_vectors() if callable(kept_vectors) else kept_vectors
        log.info("%s cannot delete in place: re-adding %d vectors", type(index).__name__, len(kept))
        index.reset()
        ix.add_vectors(index, kept)


def _is_ivf(index) -> bool:
    import faiss

    try:
        faiss.extract_index_ivf(index)
    except RuntimeError:
        return False
    return True


def _renumberable(ivf) -> bool:
    """Lists whose ids can be rewritten entry by entry (Faiss' ``ArrayInvertedLists``)."""
    import faiss

    return isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.ArrayInvertedLists)


def _renumber_ivf(ivf, removed: np.ndarray) -> None:
    import faiss

    invlists = ivf.invlists
    for lst in range(ivf.nlist):
        size = invlists.list_size(lst)
        if size == 0:
            continue
        ids = faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy()  # (size,) int64
        codes = faiss.rev_swig_ptr(invlists.get_codes(lst), size * invlists.code_size).copy()
        new_ids = ids - np.searchsorted(removed, ids)  # (size,) holds the arrays alive
        invlists.update_entries(lst, 0, size, faiss.swig_ptr(new_ids), faiss.swig_ptr(codes))
