#!/usr/bin/env python3
"""Index plan at scale: recall@10 and query latency as the collection grows, today's plan beside the new one.

For each size N (default 40,504 and 400,000; ``--sizes`` adds 2,000,000 where memory and
time allow), it makes N + ``--queries`` clustered synthetic 1280-d vectors
(``similar_images.evaluation.synthetic.clustered_vectors``, written straight into a
memory-mapped ``.npy``, cached in ``--data-dir`` between runs), and for each variant:

* ``new``: what ``similar-images build`` does now: the lists from N
  (``db/index_plan.py``), then ``nprobe`` and the pool measured against the recall target
  (``db/tuning.py``) on 200 of the collection's own vectors;
* ``today``: the former defaults: IVF100, nprobe 16, the pool chosen for recall 0.97;
* ``nlist=L`` (optionally ``nlist=L/nprobe=P``): lists (and nprobe) forced, the rest as ``new``.

it measures build time (train + add, then the choice of nprobe and pool), the index's
size, and on the held-out queries (new vectors, not rows of the collection): recall@10
against exact search with re-ranking and without, median and p95 latency of one query at
a time (re-ranking included, on the calling thread's Faiss threads), and batched ms a query.

Usage::

    .venv/bin/python benchmarks/scale.py --data-dir /tmp/scale-data
    .venv/bin/python benchmarks/scale.py --sizes 40504 --variants new,today,nlist=805
    .venv/bin/python benchmarks/scale.py --sizes 2000000 --variants new --json out.json
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
from similar_images.db import ranking, tuning
from similar_images.db.recall import own_queries, recall_of_ids
from similar_images.evaluation.synthetic import clustered_vectors

DIM = 1280
TODAY = {"nlist": 100, "nprobe": 16, "target": 0.97}  # the defaults before the plan followed N


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def data(n: int, queries: int, dim: int, folder: Path, seed: int) -> np.ndarray:
    """``(n + queries, dim)`` float32 memory map: the collection, then the held-out queries."""
    path = folder / f"scale-{n}-{queries}-{dim}-{seed}.npy"
    if not path.exists():
        part = path.with_suffix(".part.npy")
        out = np.lib.format.open_memmap(part, mode="w+", dtype=np.float32, shape=(n + queries, dim))
        _, seconds = timed(clustered_vectors, n + queries, dim, seed=seed, out=out)
        out.flush()
        del out
        part.rename(path)
        print(f"  generated {n:,} + {queries} vectors in {seconds:.0f} s ({path})", flush=True)
    return np.load(path, mmap_mode="r")


def variant_options(name: str, target: float) -> dict:
    if name == "new":
        return {"nlist": None, "nprobe": None, "target": target}
    if name == "today":
        return dict(TODAY)
    options = {"nlist": None, "nprobe": None, "target": target}
    for part in name.split("/"):
        key, value = part.split("=")
        options[key] = int(value)
    return options


def latencies(fn, queries, passes: int) -> np.ndarray:
    """Seconds of each single query, ``passes`` passes over ``queries``."""
    out = []
    for _ in range(passes):
        for q in queries:
            _, t = timed(fn, q[None, :])
            out.append(t)
    return np.array(out)


def bench(name: str, vectors, queries, exact, own, folder: Path, args) -> dict:
    options = variant_options(name, args.target)
    (index, info), build_s = timed(ix.build_index, vectors, "ivfpq", nlist=options["nlist"],
                                   train_size=args.train_size)
    choice, tune_s = timed(tuning.choose_search, index, vectors, own, target=options["target"],
                           nprobe=options["nprobe"], params=info["search_params"])
    path = folder / "scale.index"
    ix.write_index(index, path)
    size = path.stat().st_size
    path.unlink()
    k, pool = args.k, choice.pool_factor
    _, raw = ix.search(index, queries, k)
    _, found = ix.search_reranked(index, vectors, queries, k, pool_factor=pool)
    one = lambda q: ix.search_reranked(index, vectors, q, k, pool_factor=pool)  # noqa: E731
    single = latencies(one, queries[: args.single], args.passes)
    _, batch_s = timed(one, queries)
    return {
        "n": len(vectors), "variant": name, "spec": info["spec"], "why": info.get("plan", {}).get("why", ""),
        "search_params": choice.search_params, "pool": pool, "own_recall": choice.recall,
        "reached": choice.reached, "choice": choice.why, "train_size": info["train_size"],
        "build_s": build_s, "tune_s": tune_s, "index_bytes": size,
        "r10": float(recall_of_ids(vectors, queries, found, exact, k).mean()),
        "r10_raw": float(recall_of_ids(vectors, queries, raw, exact, k).mean()),
        "ms_median": 1e3 * float(np.median(single)), "ms_p95": 1e3 * float(np.percentile(single, 95)),
        "ms_batched": 1e3 * batch_s / len(queries),
    }


def table(rows) -> str:
    lines = ["| N | variant | Faiss spec | nprobe | pool | build s (train+add / choice) | index MB | "
             "recall@10 held-out, re-ranked | without re-rank | own-vector recall (build) | median ms | p95 ms | "
             "batched ms/query |",
             "|---:|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['variant']} | {r['spec']} | {r['search_params'].get('nprobe', '-')} | {r['pool']} | "
            f"{r['build_s']:.0f} / {r['tune_s']:.0f} | {r['index_bytes'] / 1e6:.1f} | {r['r10']:.3f} | "
            f"{r['r10_raw']:.3f} | {r['own_recall']:.3f}{'' if r['reached'] else ' (missed)'} | "
            f"{r['ms_median']:.2f} | {r['ms_p95']:.2f} | {r['ms_batched']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",") if x], default=[40_504, 400_000])
    parser.add_argument("--variants", type=lambda s: [x for x in s.split(",") if x], default=["today", "new"])
    parser.add_argument("--dim", type=int, default=DIM, help="vector dimension (1280: EfficientNet-Lite0)")
    parser.add_argument("--queries", type=int, default=200, help="held-out query vectors")
    parser.add_argument("--target", type=float, default=tuning.DEFAULT_RECALL_TARGET, help="recall target of `new`")
    parser.add_argument("--train-size", type=int, default=ix.DEFAULT_TRAIN_SIZE)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--single", type=int, default=50, help="held-out queries timed one at a time")
    parser.add_argument("--passes", type=int, default=2, help="passes over them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="cache the generated vectors here (2,000,000 x 1280 is 10 GB)  [default: a temporary "
                             "folder, deleted]")
    parser.add_argument("--json", type=Path, help="append each row here as it is measured (JSON lines)")
    args = parser.parse_args(argv)
    print(f"machine: {machine_line()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data_dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for n in args.sizes:
            both = data(n, args.queries, args.dim, folder, args.seed)
            vectors, queries = both[:n], np.array(both[n:])  # (n, d) memory map, (q, d)
            (_, exact), exact_s = timed(ranking.exact_search, vectors, queries, args.k)
            own, own_s = timed(own_queries, vectors, seed=args.seed)  # what build measures with
            print(f"N={n:,}: exact answers of the held-out and own queries in {exact_s + own_s:.0f} s", flush=True)
            for name in args.variants:
                rows.append(bench(name, vectors, queries, exact, own, Path(tmp), args))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
                print(f"  lists: {rows[-1]['why']}\n  search: {rows[-1]['choice']}\n  machine: {machine_line()}",
                      flush=True)
                if args.json:
                    with args.json.open("a") as out:
                        out.write(json.dumps({**rows[-1], "machine": machine_line()}, default=float) + "\n")
    print()
    print(table(rows))
    print(f"machine after: {machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
