"""``similar-images build --engine ray``: train once, encode shards in parallel, merge.

1. **Train** the IVF(-PQ) quantisers once, on the driver, on the same bounded random
   sample as the one-process build (:func:`similar_images.db.index.train_index`), so
   both builds hold the very same centroids and codebooks.
2. **Encode** row ranges of the memory-mapped vectors in parallel Ray tasks, each into
   an empty copy of the trained index (:func:`encode_slice`), with ids equal to row
   numbers.
3. **Merge** the shards' inverted lists into the trained index with IVF ``merge_from``,
   in shard order, so every list holds the same codes in the same order as the
   one-process build's.
4. Commit through :func:`similar_images.db.build.build_index_files` (the same pool
   choice, recall measurement, manifest fields and staged, journalled write).

Why ``merge_from`` and not ``faiss.contrib.ondisk.merge_ondisk``: ``merge_ondisk``
writes the lists into an ``OnDiskInvertedLists`` file (``.ivfdata``) beside the index,
for lists that do not fit in RAM. Our database is one index file plus its manifest,
checksummed and committed atomically, and readers load it with ``faiss.read_index``;
a second, memory-mapped data file would change that layout. PQ16 codes take 16 bytes
a vector (+ 8 for the id): 100 M vectors are 2.4 GB of lists, which fit the driver's
RAM, so in-memory lists are the simpler choice up to a few hundred million vectors
(``docs/scale.md``).

Memory of one encode task (bytes), for a shard of ``m`` rows of dimension ``d``:

    T + 3 * c * d * 4 + 2 * m * (code_size + 8)  +  m * d * 4 (mapped file pages)

where ``T`` is the trained, empty index (``nlist * d * 4`` coarse centroids +
``d * 2**nbits * 4`` PQ codebooks, + ``256 * d * 4`` for a PCA), ``c = min(m, CHUNK)``
rows are handled at a time (the normalised block, its temporaries and Faiss' residuals),
and the codes are held once in the lists and once serialised for the return. The last
term is the task's slice of the memory map: counted in its RSS, but page cache that
the kernel can drop and that tasks on one node share with nothing else (each reads its
own rows). A task reads only the rows of its slice (``tests/cluster`` checks it).
Measured (``benchmarks/ray_engine.py``, 20,252 x 4096 rows, IVF100,PQ16): the formula
gives 742 MB, the worker grew by 642 MB.
"""

from __future__ import annotations

import logging
import math
import os
from functools import partial
from typing import Any

import numpy as np

from similar_images.cluster.session import ray_session
from similar_images.db import index as ix
from similar_images.db.build import build_index_files
from similar_images.db.ranking import normalize
from similar_images.db.vectors import open_vectors

logger = logging.getLogger(__name__)

SHARDED_TYPES = ix.IVF_TYPES


def shard_ranges(n: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous ``(start, stop)`` row ranges covering ``0..n``, sizes within one."""
    shards = max(1, min(int(shards), n))
    bounds = [round(i * n / shards) for i in range(shards + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(shards)]


def task_memory_bytes(index, rows: int, *, chunk: int = ix.CHUNK) -> int:
    """The formula in this module's docstring, for a trained empty ``index`` and a shard of ``rows``."""
    import faiss

    trained = len(faiss.serialize_index(index))
    code_size = faiss.extract_index_ivf(index).code_size
    block = min(rows, chunk) * index.d * 4
    return trained + 3 * block + 2 * rows * (code_size + 8) + rows * index.d * 4


def encode_slice(index, vectors, start: int, stop: int, *, chunk: int = ix.CHUNK) -> None:
    """Add rows ``start..stop`` of ``vectors`` to ``index`` with their row numbers as ids.

    Reads only those rows, ``chunk`` at a time: ``(c, d)`` float32 block, normalised.
    """
    for first in range(start, stop, chunk):
        last = min(stop, first + chunk)
        block = normalize(np.asarray(vectors[first:last], dtype=np.float32))  # (c, d)
        index.add_with_ids(block, np.arange(first, last, dtype=np.int64))


def encode_shard(vectors_path: str, start: int, stop: int, trained: np.ndarray) -> np.ndarray:
    """Ray task body: a copy of the trained index holding rows ``start..stop``, serialised."""
    import faiss

    index = faiss.deserialize_index(trained)
    encode_slice(index, open_vectors(vectors_path), start, stop)
    return faiss.serialize_index(index)


def merge_shard(index, shard) -> None:
    """Move ``shard``'s inverted lists to the end of ``index``'s (ids kept as they are)."""
    import faiss

    moved = shard.ntotal
    faiss.extract_index_ivf(index).merge_from(faiss.extract_index_ivf(shard), 0)
    if isinstance(faiss.downcast_index(index), faiss.IndexPreTransform):  # its ntotal is kept apart
        index.ntotal += moved


def build_sharded(
    vectors,
    index_type: str = ix.DEFAULT_INDEX_TYPE,
    *,
    vectors_path: str | os.PathLike,
    shards: int | None = None,
    nlist: int | None = None,
    train_size: int = ix.DEFAULT_TRAIN_SIZE,
    seed: int = 0,
    show_progress: bool = False,
    pq: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """:func:`similar_images.db.index.build_index`, with the adding done by Ray tasks.

    Ray must be initialised. Index types that are not IVF (``flat``, ``hnsw``, or a
    collection too small to train) have nothing to shard and build in this process.

    Args:
        vectors: the ``(n, d)`` memory map of ``vectors_path`` (the driver trains on it).
        vectors_path: the vectors file each task maps for itself.
        shards: encode tasks (default: one per cluster CPU, each at least ``CHUNK`` rows).
        Others: as in :func:`~similar_images.db.index.build_index`.
    """
    import faiss
    import ray
    from tqdm.auto import tqdm

    n, dim = vectors.shape
    plan = ix.plan_index(index_type, n, dim, nlist=nlist, train_size=train_size, pq=pq)
    if plan.index_type not in SHARDED_TYPES:
        logger.info("%s has nothing to shard; building in this process", plan.spec)
        index, info = ix.build_index(vectors, index_type, nlist=nlist, train_size=train_size, seed=seed,
                                     show_progress=show_progress, pq=pq)
        return index, {**info, "engine": "local"}
    index = ix.new_index(plan, dim)
    used = ix.train_index(index, vectors, train_size=train_size, seed=seed)
    ix.drop_training_state(index)
    if shards is None:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        shards = max(1, min(cpus, math.ceil(n / ix.CHUNK)))
    ranges = shard_ranges(n, shards)
    logger.info("encoding %d shards; each task needs about %.0f MB", len(ranges),
                task_memory_bytes(index, ranges[0][1] - ranges[0][0]) / 1e6)
    trained = ray.put(faiss.serialize_index(index))
    task = ray.remote(num_cpus=1, max_retries=3)(encode_shard)
    refs = [task.remote(str(vectors_path), start, stop, trained) for start, stop in ranges]
    with tqdm(total=n, unit="vec", desc="encoding shards", disable=not show_progress) as bar:
        for ref, (start, stop) in zip(refs, ranges):  # shard order: lists as the one-process build
            merge_shard(index, faiss.deserialize_index(ray.get(ref)))
            bar.update(stop - start)
    if index.ntotal != n:
        raise RuntimeError(f"merged {index.ntotal} vectors, expected {n}")
    info = {"index_type": plan.index_type, "requested_type": index_type, "spec": plan.spec, "note": plan.note,
            "train_size": used, "search_params": ix.default_search_params(plan.index_type, plan),
            "plan": ix.plan_record(plan),
            "engine": "ray", "shards": len(ranges)}
    return index, info


def build_index_files_ray(
    vectors_path: str | os.PathLike,
    index_path: str | os.PathLike | None = None,
    *,
    address: str | None = None,
    shards: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`similar_images.db.build.build_index_files` with :func:`build_sharded` on Ray.

    Args:
        vectors_path, index_path, options: as in ``build_index_files``.
        address: ``None`` (a local Ray), ``"auto"`` or ``"HOST:PORT"``.
        shards: encode tasks (default: one per cluster CPU).
    """
    with ray_session(address):
        builder = partial(build_sharded, vectors_path=os.fspath(vectors_path), shards=shards)
        return build_index_files(vectors_path, index_path, builder=builder, **options)
