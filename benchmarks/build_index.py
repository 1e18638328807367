#!/usr/bin/env python3
"""Index build benchmark: our `build` against the original's build code, in one run.

For each dimension (default 1280, EfficientNet-Lite0, and 4096, VGG16 fc2) it makes N
synthetic CNN-like vectors (``similar_images.evaluation.synthetic.clustered_vectors``,
as ``benchmarks/search.py``) plus held-out queries, writes them as a database, and times,
on the same files, one after the other:

* **original**: what the original ``build_search_db.py`` did: load the whole vectors
  file, a Faiss ``IndexIVFPQ`` with ``sqrt(N)`` lists and PQ 16 x 8 bits, trained on
  ALL the vectors, then add them all, then write the index;
* **ours**: ``similar_images.db.build.build_index_files``, everything ``similar-images
  build`` does (open and check the database, train on a bounded sample, add in chunks
  on all cores, choose the re-ranking pool, measure recall, write index and manifest).

It prints the ratio ours / original (goal <= 0.5) and the recall@10 of our default search
(exact re-ranking of the recorded pool) on the held-out queries (goal >= 0.95).

``--train-table`` adds recall@10 against training size (points per centroid of the
largest k-means), the measurement behind ``index.TRAIN_POINTS_PER_CENTROID``.

Usage::

    .venv/bin/python benchmarks/build_index.py                      # the issue's figures
    .venv/bin/python benchmarks/build_index.py --n 10000 --dims 1280 --train-table
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine_line

from similar_images.db import index as ix
from similar_images.db import ranking
from similar_images.db.build import build_index_files
from similar_images.db.recall import choose_pool_factor, recall_of_ids
from similar_images.db.vectors import open_vectors, save_vectors
from similar_images.evaluation.synthetic import clustered_vectors

GOAL_RATIO = 0.5
GOAL_RECALL = 0.95


def original_build(vectors_path: Path, index_path: Path) -> None:
    """The original build code, restated: IVF sqrt(N) lists + PQ16x8, trained on all vectors."""
    import faiss

    vectors = np.load(vectors_path).astype(np.float32)  # the whole file in memory
    n, d = vectors.shape
    nlist = int(math.sqrt(n))
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFPQ(quantizer, d, nlist, 16, 8)
    index.train(vectors)
    index.add(vectors)
    faiss.write_index(index, str(index_path))


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def held_out_recall(index_path: Path, vectors, queries, exact, manifest: dict, k: int) -> float:
    """Recall@k of the default search (the manifest's parameters and pool) on held-out queries."""
    index = ix.read_index(index_path)
    ix.set_search_params(index, manifest["search_params"])
    _, found = ix.search_reranked(index, vectors, queries, k, pool_factor=manifest["pool_factor"])
    return float(recall_of_ids(vectors, queries, found, exact, k).mean())


def bench_dim(dim: int, folder: Path, args) -> list[dict]:
    """The original's build, then ours for each ``--types``, on the same vectors: one row per type."""
    data, gen_s = timed(clustered_vectors, args.n + args.queries, dim, seed=args.seed)
    vectors_path = folder / f"v{dim}.npy"
    save_vectors(vectors_path, data[: args.n], {"model": {"name": f"synthetic-{dim}"},
                                                 "names": [str(i) for i in range(args.n)]})
    queries = np.array(data[args.n:])  # (q, d) held out: new photos
    del data
    vectors = open_vectors(vectors_path)  # (n, d) memory map
    _, exact = ranking.exact_search(vectors, queries, args.k)
    print(f"  {args.n} x {dim}: data in {gen_s:.1f} s; timing the original's build ...", flush=True)
    _, original_s = timed(original_build, vectors_path, folder / f"original{dim}.index")
    rows = []
    for index_type in args.types:
        print(f"  original {original_s:.1f} s; timing ours ({index_type}) ...", flush=True)
        index_path = folder / f"ours{dim}-{index_type}.index"
        manifest, ours_s = timed(build_index_files, vectors_path, index_path, index_type=index_type,
                                 show_progress=False, force=True)
        recall = held_out_recall(index_path, vectors, queries, exact, manifest, args.k)
        rows.append({"dim": dim, "type": index_type, "original_s": original_s, "ours_s": ours_s,
                     "ratio": ours_s / original_s, "spec": manifest["spec"], "train_size": manifest["train_size"],
                     "pool": manifest["pool_factor"], "recall": recall,
                     "build_recall": manifest["recall"][f"recall_at_{args.k}"]})
    if args.train_table:
        rows[0]["train_table"] = train_table(vectors, queries, exact, args)
    return rows


def train_table(vectors, queries, exact, args) -> list[dict]:
    """Recall@k (re-ranked at the pool the build would choose, and raw) per training size."""
    rows = []
    for per in args.per_centroid:
        (index, info), build_s = timed(ix.build_index, vectors, "ivfpq", points_per_centroid=per)
        ix.set_search_params(index, info["search_params"])
        pool, _ = choose_pool_factor(index, vectors)
        _, raw = ix.search(index, queries, args.k)
        _, found = ix.search_reranked(index, vectors, queries, args.k, pool_factor=pool)
        rows.append({"per_centroid": per, "train_size": info["train_size"], "build_s": build_s, "pool": pool,
                     "recall": float(recall_of_ids(vectors, queries, found, exact, args.k).mean()),
                     "raw": float(recall_of_ids(vectors, queries, raw, exact, args.k).mean())})
        print(f"    {per} per centroid: {rows[-1]}", flush=True)
    return rows


def report(rows, args) -> str:
    lines = [f"| vectors | original s (IVF sqrt(N),PQ16x8, all) | ours s | ours / original | our spec, "
             f"training sample | pool | recall@{args.k} held-out (build's own) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {args.n} x {r['dim']} | {r['original_s']:.1f} | {r['ours_s']:.1f} | **{r['ratio']:.2f}** | "
                     f"{r['spec']}, {r['train_size']} | {r['pool']} x k | {r['recall']:.3f} ({r['build_recall']:.3f}) |")
    for r in rows:
        ok = r["ratio"] <= GOAL_RATIO and r["recall"] >= GOAL_RECALL
        lines.append(f"goal (ours <= {GOAL_RATIO} x original at recall@{args.k} >= {GOAL_RECALL}) at "
                     f"{args.n} x {r['dim']}, {r['type']}: {'MET' if ok else 'NOT MET'} "
                     f"(ratio {r['ratio']:.2f}, recall {r['recall']:.3f})")
    for r in rows:
        if r.get("train_table"):
            lines += ["", f"{args.n} x {r['dim']}, ivfpq: recall@{args.k} against training size",
                      "| per centroid | training vectors | build s | pool | recall@10 re-ranked | without re-rank |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {t['per_centroid']} | {t['train_size']} | {t['build_s']:.1f} | {t['pool']} | "
                      f"{t['recall']:.3f} | {t['raw']:.3f} |" for t in r["train_table"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40_504, help="collection size")
    parser.add_argument("--dims", default="1280,4096", help="comma-separated dimensions")
    parser.add_argument("--queries", type=int, default=200, help="held-out query vectors")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--types", type=lambda s: [ix.check_index_type(t) for t in s.split(",") if t],
                        default=[ix.DEFAULT_INDEX_TYPE], help="our index types to build (default: the default)")
    parser.add_argument("--train-table", action="store_true", help="also recall@k against training size")
    parser.add_argument("--per-centroid", type=lambda s: [int(x) for x in s.split(",")], default=[39, 64, 128, 256],
                        help="training points per centroid for --train-table")
    parser.add_argument("--threads", type=int, default=None,
                        help="Faiss OpenMP threads  [default: all usable cores; 1 measures work on a shared machine]")
    args = parser.parse_args(argv)
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)

    print(f"machine: {machine_line()}; faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads",
          flush=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dim in (int(x) for x in args.dims.split(",") if x):
            rows += bench_dim(dim, Path(tmp), args)
    print(f"\n{started}, {args.n} vectors, {args.queries} held-out queries\n")
    print(report(rows, args))
    print(f"machine after: {machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
