#!/usr/bin/env python3
"""Search benchmark: index types and candidate generators on N vectors, in one run.

For each dimension (default 1280, EfficientNet-Lite0, and 4096, VGG16 fc2), for each
index type (default ``ivfpq``, the default index; ``--types`` adds ``flat``,
``pca-ivfpq``, ``hnsw``), each extra Faiss factory string (``--specs``, for example
``"IVF100,PQ32x8;IVF100,SQ8;PCA256,HNSW32"``) and exact NumPy search without an index,
on N realistic synthetic vectors (default 40,504: non-negative, sparse-ish, clustered
like CNN features; see ``similar_images/evaluation/synthetic.py``), it measures:

* build time (train on a bounded sample + add) and the index file's size;
* recall@1 and recall@10 against exact search, with exact re-ranking (the default
  search: ``pool x k`` candidates re-scored against the memory-mapped float32
  vectors; ``pool`` chosen as ``build`` chooses it) and without (the index's own ranking);
* latency per query: one query at a time (re-ranked in place by Faiss, and with the
  former NumPy gather for comparison), and in one batch of all queries.

Then (``--image-query``, on by default) an image query, file to results, through
``SimilarImages.search(path)`` on a 40,504 x 1280 EfficientNet-Lite0 database against
its parts: decode and one batch-1 forward of the same image.

It prints whether each goal of issue 15 is met: single query <= 1.5 ms median at
recall@10 >= 0.95 (default index, every dimension), and image query <= 1.1 x (decode +
forward).

Queries are held-out vectors from the same distribution (new photos), not vectors of
the collection. The database is written to a temporary folder and searched through the
same functions as ``SimilarImages`` (vectors memory-mapped from disk).

Usage::

    .venv/bin/python benchmarks/search.py                       # the issue's figures
    .venv/bin/python benchmarks/search.py --n 10000 --dims 4096 --types ivfpq,hnsw --no-image-query
    .venv/bin/python benchmarks/search.py --specs "IVF100,PQ32x8;PCA256,HNSW32" --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _image_query import add_arguments as image_arguments
from _image_query import bench_image_query
from _machine import machine_line

from similar_images.db import index as ix
from similar_images.db import ranking
from similar_images.db.recall import choose_pool_factor, recall_of_ids
from similar_images.db.vectors import open_vectors, save_vectors
from similar_images.evaluation.synthetic import clustered_vectors

GOAL_SINGLE_MS = 1.5
GOAL_RECALL = 0.95
GOAL_IMAGE_RATIO = 1.1


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


def build_spec(vectors, spec: str):
    """An index from a Faiss factory string, trained and filled as ``build`` does."""
    import faiss

    index = faiss.index_factory(vectors.shape[1], spec, faiss.METRIC_INNER_PRODUCT)
    ix.no_polysemous_training(index)
    used = ix.train_index(index, vectors)
    ix.drop_training_state(index)
    ix.add_vectors(index, vectors)
    kind = "hnsw" if "HNSW" in spec else "ivfpq" if "IVF" in spec else "flat"
    return index, {"index_type": spec, "spec": spec, "note": None, "train_size": used,
                   "search_params": ix.default_search_params(kind)}


def bench_index(name, builder, vectors, queries, exact, folder: Path, args) -> dict:
    (index, info), build_s = timed(builder)
    params = {**info["search_params"], **({"nprobe": args.nprobe} if args.nprobe and "nprobe" in
                                          info["search_params"] else {})}
    ix.set_search_params(index, params)
    path = folder / "bench.index"
    ix.write_index(index, path)
    k = args.k
    pool = args.pool or choose_pool_factor(index, vectors)[0]  # what `build` would record
    _, raw = ix.search(index, queries, k)
    _, reranked = ix.search_reranked(index, vectors, queries, k, pool_factor=pool)
    one = lambda q: ix.search_reranked(index, vectors, q, k, pool_factor=pool)  # noqa: E731
    single, batched = latency(one, one, queries, args.repeats)

    def one_numpy(q):  # the former re-rank: gather the rows, then one NumPy product
        return ranking.rerank_numpy(vectors, q, ix.search(index, q, pool * k)[1], k)

    numpy_single, _ = latency(one_numpy, one_numpy, queries[:20], 1)
    raw_single, raw_batched = latency(lambda q: ix.search(index, q, k), lambda q: ix.search(index, q, k),
                                      queries, args.repeats)
    return {
        "n": len(vectors), "dim": vectors.shape[1], "type": name, "spec": info["spec"], "note": info["note"], "build_s": build_s,
        "train_size": info["train_size"], "bytes": path.stat().st_size,
        "r1": recall_of_ids(vectors, queries, reranked, exact, 1).mean(),
        "r10": recall_of_ids(vectors, queries, reranked, exact, k).mean(),
        "r1_raw": recall_of_ids(vectors, queries, raw, exact, 1).mean(),
        "r10_raw": recall_of_ids(vectors, queries, raw, exact, k).mean(),
        "ms_single": single, "ms_batched": batched, "ms_single_raw": raw_single, "ms_batched_raw": raw_batched,
        "ms_single_numpy": numpy_single, "params": params, "pool": pool,
    }


def bench_exact(vectors, queries, args) -> dict:
    norms = ranking.row_norms(vectors)
    search = lambda q: ranking.exact_search(vectors, q, args.k, norms=norms)  # noqa: E731
    single, batched = latency(search, search, queries, max(1, args.repeats // 3))
    return {"n": len(vectors), "dim": vectors.shape[1], "type": "exact (no index)", "spec": "NumPy on the memory map",
            "note": None,
            "build_s": 0.0, "train_size": 0, "bytes": 0, "r1": 1.0, "r10": 1.0, "r1_raw": 1.0, "r10_raw": 1.0,
            "ms_single": single, "ms_batched": batched, "ms_single_raw": single, "ms_batched_raw": batched,
            "ms_single_numpy": single, "params": {}, "pool": "-"}


def table(rows, args) -> str:
    lines = [
        f"| d | index | Faiss spec | build s | index MB | pool | recall@1 | recall@{args.k} | recall@1 / @{args.k} "
        "without re-rank | ms/query single | single, NumPy re-rank | ms/query batched | "
        "ms single / batched without re-rank |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dim']} | {r['type']} | {r['spec']} | {r['build_s']:.1f} | {r['bytes'] / 1e6:.1f} | {r['pool']} | "
            f"{r['r1']:.3f} | {r['r10']:.3f} | {r['r1_raw']:.3f} / {r['r10_raw']:.3f} | {r['ms_single']:.2f} | "
            f"{r['ms_single_numpy']:.2f} | {r['ms_batched']:.3f} | {r['ms_single_raw']:.2f} / {r['ms_batched_raw']:.3f} |"
        )
    return "\n".join(lines)


def synthetic_data(dim: int, args) -> tuple[np.ndarray, int, str]:
    """``--n`` collection vectors then ``--queries`` held-out ones, from the same distribution."""
    data, gen_s = timed(clustered_vectors, args.n + args.queries, dim, seed=args.seed)
    return data, args.n, f"{args.n} x {dim} synthetic vectors + {args.queries} held-out queries ({gen_s:.1f} s to generate)"


def file_data(path: Path, args) -> tuple[np.ndarray, int, str]:
    """A real vectors file, ``--queries`` random rows moved to the end as held-out queries (new photos)."""
    vectors = open_vectors(path)
    rows = np.random.default_rng(args.seed).permutation(len(vectors))
    kept, held_out = np.sort(rows[args.queries:]), np.sort(rows[: args.queries])
    data = np.concatenate([vectors[kept], vectors[held_out]]).astype(np.float32)  # (n + q, d)
    return data, len(kept), f"{len(kept)} x {vectors.shape[1]} vectors of {path.name} + {args.queries} of its rows held out"


def bench_dim(data: np.ndarray, n: int, what: str, folder: Path, args) -> list[dict]:
    """Every index of ``--types`` and ``--specs`` over ``data[:n]``, queried with the rows after ``n``."""
    dim = data.shape[1]
    print(f"data: {what}", flush=True)
    save_vectors(folder / f"v{dim}.npy", data[:n], {"model": {"name": "synthetic"}, "names": [str(i) for i in range(n)]})
    queries = np.array(data[n:])  # (q, d)
    del data
    vectors = open_vectors(folder / f"v{dim}.npy")  # (n, d) memory map, as the search API reads it
    _, exact = ranking.exact_search(vectors, queries, args.k)
    rows = [bench_exact(vectors, queries, args)] if args.exact else []
    builders = [(t, lambda t=t: ix.build_index(vectors, t)) for t in args.types]
    builders += [(spec, lambda spec=spec: build_spec(vectors, spec)) for spec in args.specs]
    for name, builder in builders:
        rows.append(bench_index(name, builder, vectors, queries, exact, folder, args))
        print(table(rows[-1:], args).splitlines()[-1], flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40_504, help="collection size")
    parser.add_argument("--dims", type=lambda s: [int(x) for x in s.split(",") if x], default=[1280, 4096])
    parser.add_argument("--queries", type=int, default=200, help="held-out query vectors")
    parser.add_argument("--types", type=lambda s: [ix.check_index_type(t) for t in s.split(",") if t],
                        default=[ix.DEFAULT_INDEX_TYPE], help=f"comma-separated, of: {', '.join(ix.INDEX_TYPES)}")
    parser.add_argument("--specs", type=lambda s: [x for x in s.split(";") if x], default=[],
                        help="extra Faiss factory strings, ';'-separated (candidate generators to compare)")
    parser.add_argument("--exact", action="store_true", help="also time exact NumPy search without an index")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--pool", type=int, default=None,
                        help="re-rank pool factor (pool x k candidates)  [default: chosen as `build` does]")
    parser.add_argument("--nprobe", type=int, default=None, help="IVF lists searched  [default: the index's]")
    parser.add_argument("--repeats", type=int, default=3, help="passes of 20 single queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vectors", type=lambda s: [Path(x) for x in s.split(",") if x], default=[],
                        help="real vectors files (comma-separated) instead of synthetic ones; --queries of their "
                             "rows are held out as queries")
    parser.add_argument("--json", type=Path, help="also write the results here")
    image_arguments(parser)
    args = parser.parse_args(argv)
    print(f"machine: {machine_line()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sources = ([(lambda path=path: file_data(path, args)) for path in args.vectors] if args.vectors
                   else [(lambda dim=dim: synthetic_data(dim, args)) for dim in args.dims])
        for source in sources:
            rows += bench_dim(*source(), Path(tmp), args)
        images = bench_image_query(Path(tmp), args) if args.image_query else []
    print()
    print(table(rows, args))
    for r in rows:
        if r["note"]:
            print(f"note ({r['type']}): {r['note']}")
    for r in rows:
        if r["type"] == ix.DEFAULT_INDEX_TYPE:
            ok = r["ms_single"] <= GOAL_SINGLE_MS and r["r10"] >= GOAL_RECALL
            print(f"goal (single query <= {GOAL_SINGLE_MS} ms median at recall@{args.k} >= {GOAL_RECALL}) at "
                  f"{r['n']} x {r['dim']}: {'MET' if ok else 'NOT MET'} ({r['ms_single']:.2f} ms, {r['r10']:.3f})")
    for image in images:
        print(image["summary"])
        ok = image["ratio"] <= GOAL_IMAGE_RATIO
        print(f"goal (image query <= {GOAL_IMAGE_RATIO} x (decode + forward), {image['type']}): "
              f"{'MET' if ok else 'NOT MET'} ({image['ratio']:.2f})")
    print(f"machine after: {machine_line()}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_line(), "n": args.n, "dims": args.dims,
                                         "queries": args.queries, "rows": rows, "image_queries": images},
                                        indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
