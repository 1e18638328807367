"""Build the search index of a vectors file: train, fill, measure, write atomically."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from similar_images.db import index as ix
from similar_images.db import journal, tuning
from similar_images.db import recall as recall_mod
from similar_images.db.database import (
    Database,
    default_index_path,
    index_manifest_for,
    now_iso,
    require_vectors,
)
from similar_images.db.index_manifest import refuse_edits_since_build
from similar_images.db.integrity import drop_stamp
from similar_images.db.refine import map_stage, refine_wanted, row_blocks, train_quantizer, write_codes
from similar_images.db.refine import record as refine_record
from similar_images.fileio.files import manifest_path, refine_codes_path, write_json_to

log = logging.getLogger(__name__)


def build_index_files(
    vectors_path: str | os.PathLike,
    index_path: str | os.PathLike | None = None,
    *,
    index_type: str = ix.DEFAULT_INDEX_TYPE,
    dimension: int | None = None,
    force: bool = False,
    nlist: int | None = None,
    pq: int | None = None,
    nprobe: int | None = None,
    recall_target: float = tuning.DEFAULT_RECALL_TARGET,
    train_size: int = ix.DEFAULT_TRAIN_SIZE,
    eval_queries: int = 200,
    seed: int = 0,
    show_progress: bool = True,
    builder=None,
    refine: str = "auto",
) -> dict[str, Any]:
    """Build an index over a vectors file and write it with its manifest.

    Args:
        vectors_path: the ``.npy`` vectors file (with its manifest).
        index_path: where to write; default :func:`database.default_index_path`.
        index_type: one of :data:`index.INDEX_TYPES`.
        dimension: if given, the vectors must have this dimension (a check).
        force: replace an existing index.
        nlist: IVF lists for the IVF types; ``None``: from the collection's size
            (:func:`index_plan.plan_index`), fewer when the training sample is small.
        pq: bytes of a PQ code (IVF types); ``None``: from the collection's size.
        nprobe: IVF lists a query probes; ``None``: measured (:func:`tuning.choose_search`).
        recall_target: recall@10 against exact search (with re-ranking) that ``nprobe``
            and the re-ranking pool are chosen to reach.
        train_size: at most this many vectors (a random sample) train the index.
        eval_queries: own vectors used as queries to measure recall against exact search.
        seed: seed of the training and evaluation samples.
        show_progress: show a progress bar while adding vectors.
        builder: makes ``(index, info)`` like :func:`index.build_index` (same
            arguments); default :func:`index.build_index` in this process
            (``similar_images.cluster.ray_build`` passes a sharded one).
        refine: ``"auto"`` (past :data:`refine.REFINE_FROM` vectors), ``"yes"`` or ``"no"``:
            write the index's refine stage, 8-bit codes of every row (:mod:`refine`).

    Returns:
        The index manifest written, including ``build_seconds``, ``index_bytes``,
        ``recall``, ``note`` (why the index differs from the one asked for) and ``plan``
        (the decision: lists, quantizer, nprobe, pool, target, measured recall, why).

    Raises:
        FileExistsError: the index exists and ``force`` is false.
        ValueError: bad ``index_type`` or a dimension mismatch.
        DatabaseError: the vectors file or its manifest is unusable, or its names or model
            description were edited since the index at ``index_path`` was built from these
            same vectors (``force`` never re-signs an edit that only that index still shows).
    """
    ix.check_index_type(index_type)
    refine_wanted(refine, 0)  # an unknown choice is refused before any work
    vectors_path = Path(vectors_path)
    index_path = Path(index_path) if index_path is not None else default_index_path(vectors_path)
    if index_path.exists() and not force:
        raise FileExistsError(f"{index_path} already exists; use --force to replace it")
    require_vectors(vectors_path)
    fold_changes(vectors_path, index_path)
    with journal.change(vectors_path, also=(index_path,)) as stage:
        # a fresh full check: an index is never built (and signed) over damaged vectors
        db = Database.open(vectors_path, None, fresh=True)
        vm, vectors = db.manifest, db.vectors  # (n, d) float32 memory map
        refuse_edits_since_build(index_path, vectors_path, vm)  # the old index manifest: the last evidence of an edit
        n, d = vectors.shape
        if dimension is not None and d != dimension:
            raise ValueError(f"{vectors_path} holds {d}-dimensional vectors ({vm['model'].get('name', '?')}), "
                             f"not {dimension}: use -d {d}, or leave -d out (the manifest's dimension is the default)")
        log.info("building %s index over %d x %d vectors", index_type, n, d)
        start = time.perf_counter()
        index, info = (builder or ix.build_index)(vectors, index_type, nlist=nlist, train_size=train_size,
                                                  seed=seed, show_progress=show_progress, pq=pq)
        build_seconds = time.perf_counter() - start
        own = recall_mod.own_queries(vectors, n_queries=eval_queries, seed=seed)  # one exact search for all
        choice = tuning.choose_search(index, vectors, own, target=recall_target, nprobe=nprobe,
                                      params=info["search_params"])
        pool_factor = choice.pool_factor
        pool_recalls = {str(t["pool_factor"]): t["recall"] for t in choice.trials
                        if t.get("nprobe") == choice.search_params.get("nprobe")}
        refined = write_refine_stage(stage, index_path, vectors, seed=seed) \
            if refine_wanted(refine, n) and ix.ivf_of(index) is not None else None
        recall = recall_mod.measure_recall(index, vectors, pool_factor=pool_factor, own=own,
                                           refine=refined[0] if refined else None)
        staged_index = stage.file(index_path)
        ix.write_index_to(index, staged_index)
        plan = {**info.get("plan", {}), **choice.search_params, "pool_factor": pool_factor,
                "recall_target": recall_target, "recall": choice.recall, "reached": choice.reached,
                "search_why": choice.why, "trials": choice.trials}
        base = {**info, "search_params": choice.search_params, "plan": plan, "metric": "cosine",
                "vectors": vectors_path.name, "pool_factor": pool_factor, "pool_recalls": pool_recalls,
                "build_seconds": round(build_seconds, 3), "built": now_iso(), "recall": recall,
                "trained_for": int(n),  # what the lists and the search were chosen for (index_manifest.outgrown)
                **({"refine": refined[1]} if refined else {})}
        if refined is None and refine_codes_path(index_path).exists():  # an earlier build's: no longer named
            stage.after_commit(lambda: (refine_codes_path(index_path).unlink(missing_ok=True),
                                        drop_stamp(refine_codes_path(index_path))))
        manifest = index_manifest_for(index_path, staged_index, vm, base)
        stage.known_sha(staged_index, manifest["index_sha256"])
        write_json_to(stage.file(manifest_path(index_path)), manifest)
    return manifest


def write_refine_stage(stage: journal.Stage, index_path: Path, vectors, *, seed: int):
    """Fit the 8-bit quantizer, write the codes of every row to the staged refine file, and
    return ``(the stage mapped from it, the manifest's refine record)``."""
    sq = train_quantizer(vectors, seed=seed)
    staged = stage.file(refine_codes_path(index_path))
    sha = write_codes(staged, sq, row_blocks(vectors), vectors.shape)
    stage.known_sha(staged, sha)
    spec = refine_record(staged, sq, len(vectors), sha)
    return map_stage(staged, spec, vectors.shape[1]), spec


def retrain(vectors_path: str | os.PathLike, index_path: str | os.PathLike, *,
            show_progress: bool = False) -> dict[str, Any]:
    """Build the index at ``index_path`` again for the collection as it is now (the lists from
    today's size, nprobe and pool measured again), keeping its type and recall target; the
    changes since the last full write are folded in first. Returns the new index manifest."""
    from similar_images.db.index_manifest import read_index_manifest

    old = read_index_manifest(Path(index_path))
    target = (old.get("plan") or {}).get("recall_target", tuning.DEFAULT_RECALL_TARGET)
    return build_index_files(vectors_path, index_path, index_type=old.get("requested_type", old.get("index_type")),
                             force=True, recall_target=float(target), show_progress=show_progress)


def fold_changes(vectors_path: Path, index_path: Path) -> None:
    """Compact first when rows were added or removed since the last full write, so the
    new index covers exactly the live rows, numbered ``0..n-1``."""
    from similar_images.db.compaction import compact

    db = Database.open(vectors_path, None, trust=True)
    if db.generation is not None and (db.id_count != len(db.base_rows) or len(db.deleted)):
        compact(vectors_path, index_path)


def build_summary(manifest: dict[str, Any], index_path: str | os.PathLike) -> str:
    """Human-readable lines about a build: type, time, size, recall."""
    recall = manifest.get("recall", {})
    k = recall.get("k", 10)
    lines = []
    if manifest.get("note"):
        lines.append(f"note: {manifest['note']}")
    plan = manifest.get("plan") or {}
    if plan.get("why"):
        lines.append(f"lists: {plan['why']}")
    if plan.get("search_why"):
        lines.append(f"search: {plan['search_why']}")
    lines += [
        f"index: {index_path} ({manifest['index_type']}: {manifest['spec']}, "
        f"{manifest['count']} vectors of dimension {manifest['dimension']})",
        f"build time: {manifest['build_seconds']:.1f} s",
        f"index size: {manifest['index_bytes'] / 1e6:.2f} MB",
        f"recall@{k} vs exact ({recall.get('queries')} own vectors as queries): "
        f"{recall.get(f'recall_at_{k}', float('nan')):.3f} with re-ranking, "
        f"{recall.get(f'recall_at_{k}_without_rerank', float('nan')):.3f} without",
        *([f"refine stage: 8-bit codes of {manifest['refine']['rows']} rows "
           f"({manifest['refine']['bytes'] / 1e6:.1f} MB, mapped): the best {manifest['refine']['exact_factor']} x k "
           "of the pool are re-ranked exactly"] if manifest.get("refine") else []),
        f"re-ranking pool: {manifest.get('pool_factor')} x k candidates (recall@{k} per pool of queries "
        f"like new {'texts' if (manifest.get('model') or {}).get('kind') == 'text' else 'photos'}: "
        + ", ".join(f"{f}x {r:.3f}" for f, r in manifest.get("pool_recalls", {}).items()) + ")",
    ]
    return "\n".join(lines)
