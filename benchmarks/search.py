#!/usr/bin/env python3
"""Search index benchmark: every index type on N vectors, in one run.

For each index type (``ivfpq``, ``flat``, ``pca-ivfpq``, ``hnsw``) and for exact
NumPy search without an index, on N realistic synthetic vectors (default 40,504 x
4096: non-negative, sparse-ish, clustered like VGG16 fc2 features; see
``similar_images/synthetic.py``), it measures:

* build time (train on a bounded sample + add) and the index file's size;
* recall@1 and recall@10 against exact search, with exact re-ranking (the default
  search: ``pool x k`` candidates re-scored against the memory-mapped float32
  vectors; ``pool`` chosen as ``build`` chooses it) and without (the index's own ranking);
* latency per query: one query at a time, and in one batch of all queries.

Queries are held-out vectors from the same distribution (new photos), not vectors of
the collection. The database is written to a temporary folder and searched through the
same functions as ``SimilarImages`` (vectors memory-mapped from disk).

Usage::

    .venv/bin/python benchmarks/search.py                       # 40,504 x 4096, all types
    .venv/bin/python benchmarks/search.py --n 10000 --types ivfpq,flat --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine_line

from similar_images.db import index as ix
from similar_images.db import ranking
from similar_images.db.recall import choose_pool_factor, recall_of_ids
from similar_images.db.vectors import open_vectors, save_vectors
from similar_images.evaluation.synthetic import clustered_vectors


def machine() -> str:
    return machine_line()


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def latency(search_one, search_all, queries, repeats: int) -> tuple[float, float]:
    """Median ms per query one at a time (over ``repeats`` passes of 20 queries), and batched."""
    singles = []
    for _ in range(repeats):
        for q in queries[:20]:
            _, t = timed(search_one, q[None, :])
            singles.append(t)
    _, batch = timed(search_all, queries)
    return 1e3 * float(np.median(singles)), 1e3 * batch / len(queries)


def bench_type(index_type, vectors, queries, exact, folder: Path, args) -> dict:
    index, build_s = timed(ix.build_index, vectors, index_type, train_size=args.train_size)
    index, info = index
    ix.set_search_params(index, info["search_params"])
    path = folder / f"{index_type}.index"
    ix.write_index(index, path)
    k = args.k
    pool = args.pool or choose_pool_factor(index, vectors)[0]  # what `build` would record
    _, raw = ix.search(index, queries, k)
    _, reranked = ix.search_reranked(index, vectors, queries, k, pool_factor=pool)
    one = lambda q: ix.search_reranked(index, vectors, q, k, pool_factor=pool)  # noqa: E731
    single, batched = latency(one, one, queries, args.repeats)
    raw_single, raw_batched = latency(lambda q: ix.search(index, q, k), lambda q: ix.search(index, q, k),
                                      queries, args.repeats)
    return {
        "type": index_type, "spec": info["spec"], "note": info["note"], "build_s": build_s,
        "train_size": info["train_size"], "bytes": path.stat().st_size,
        "r1": recall_of_ids(vectors, queries, reranked, exact, 1).mean(),
        "r10": recall_of_ids(vectors, queries, reranked, exact, k).mean(),
        "r1_raw": recall_of_ids(vectors, queries, raw, exact, 1).mean(),
        "r10_raw": recall_of_ids(vectors, queries, raw, exact, k).mean(),
        "ms_single": single, "ms_batched": batched, "ms_single_raw": raw_single, "ms_batched_raw": raw_batched,
        "params": info["search_params"], "pool": pool,
    }


def bench_exact(vectors, queries, args) -> dict:
    norms = ranking.row_norms(vectors)
    search = lambda q: ranking.exact_search(vectors, q, args.k, norms=norms)  # noqa: E731
    single, batched = latency(search, search, queries, max(1, args.repeats // 3))
    return {"type": "exact (no index)", "spec": "NumPy on the memory map", "note": None, "build_s": 0.0,
            "train_size": 0, "bytes": 0, "r1": 1.0, "r10": 1.0, "r1_raw": 1.0, "r10_raw": 1.0,
            "ms_single": single, "ms_batched": batched, "ms_single_raw": single, "ms_batched_raw": batched,
            "params": {}, "pool": "-"}


def table(rows, args) -> str:
    lines = [
        f"| index | Faiss spec | build s | index MB | pool | recall@1 | recall@{args.k} | recall@1 / @{args.k} "
        "without re-rank | ms/query single | ms/query batched | ms single / batched without re-rank |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['type']} | {r['spec']} | {r['build_s']:.1f} | {r['bytes'] / 1e6:.1f} | {r['pool']} | {r['r1']:.3f} | "
            f"{r['r10']:.3f} | {r['r1_raw']:.3f} / {r['r10_raw']:.3f} | {r['ms_single']:.2f} | "
            f"{r['ms_batched']:.3f} | {r['ms_single_raw']:.2f} / {r['ms_batched_raw']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40_504, help="collection size")
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--queries", type=int, default=200, help="held-out query vectors")
    parser.add_argument("--types", default=",".join(ix.INDEX_TYPES), help="comma-separated index types")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--pool", type=int, default=None,
                        help="re-rank pool factor (pool x k candidates)  [default: chosen as `build` does]")
    parser.add_argument("--train-size", type=int, default=ix.DEFAULT_TRAIN_SIZE)
    parser.add_argument("--repeats", type=int, default=3, help="passes of 20 single queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    types = [ix.check_index_type(t) for t in args.types.split(",") if t]
    print(f"machine: {machine()}", flush=True)
    data, gen_s = timed(clustered_vectors, args.n + args.queries, args.dim, seed=args.seed)
    print(f"data: {args.n} x {args.dim} synthetic vectors + {args.queries} held-out queries "
          f"({gen_s:.1f} s to generate)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_vectors(folder / "v.npy", data[: args.n], {"model": {"name": "synthetic"},
                                                        "names": [str(i) for i in range(args.n)]})
        queries = np.array(data[args.n:])  # (q, d)
        del data
        vectors = open_vectors(folder / "v.npy")  # (n, d) memory map, as the search API reads it
        _, exact = ranking.exact_search(vectors, queries, args.k)
        rows = [bench_exact(vectors, queries, args)]
        print(table(rows, args), flush=True)
        for index_type in types:
            rows.append(bench_type(index_type, vectors, queries, exact, folder, args))
            print(table(rows[-1:], args).splitlines()[-1], flush=True)
    print()
    print(table(rows, args))
    for r in rows:
        if r["note"]:
            print(f"note ({r['type']}): {r['note']}")
    print(f"machine after: {machine()}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "n": args.n, "dim": args.dim,
                                         "queries": args.queries, "rows": rows}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
